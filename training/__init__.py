"""Training, evaluation and export of depth_ros models; scripts run from the repository root
(``python training/train.py ...``)."""
