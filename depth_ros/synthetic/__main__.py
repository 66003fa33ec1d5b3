"""``python -m depth_ros.synthetic``: the ``make_synthetic_drive`` command."""

from depth_ros.synthetic.cli import main

raise SystemExit(main())
