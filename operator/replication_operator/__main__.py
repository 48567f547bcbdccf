"""`python -m replication_operator` is the same as the `replication-operator` command."""

from replication_operator.cli import main

raise SystemExit(main())
