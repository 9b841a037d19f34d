"""``python -m debuggable``: the ``debuggable`` command (and what torchrun's ``-m`` starts)."""

from debuggable.cli import main

raise SystemExit(main())
