"""`python -m benchmarks [--quick] [--models ...] [--only ...] [--profile]`."""

from benchmarks.bench import main

raise SystemExit(main())
