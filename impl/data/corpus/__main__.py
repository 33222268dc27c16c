"""``python -m impl.data.corpus --write`` rebuilds the committed snapshot; see
`impl.data.corpus`."""

from impl.data.corpus import main

raise SystemExit(main())
