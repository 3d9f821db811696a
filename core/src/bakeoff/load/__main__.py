from bakeoff.load.shoppers import main

raise SystemExit(main())
