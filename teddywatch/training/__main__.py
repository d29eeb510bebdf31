from teddywatch.training.fit import main

raise SystemExit(main())
