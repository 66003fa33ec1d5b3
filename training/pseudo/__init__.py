"""Pseudo-label distillation: the label format (``labels``), pseudo-labelled batches
(``data``) and their loss (``loss``). ``training/pseudo_label.py`` writes the labels."""
