"""`python -m civicpulse ...` runs the `civicpulse` command."""

from civicpulse.cli import main

raise SystemExit(main())
