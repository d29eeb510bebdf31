"""Entry point of the frozen app: the same `main()` as the `teddywatch` command.

Started with `--decoder-process FD` (by `teddywatch.decoders`, which runs `sys.executable` with
it when frozen), it is one of the app's decoder processes instead, and imports no more than that
needs.
"""

import sys

if __name__ == "__main__":
    if sys.argv[1:2] == ["--decoder-process"]:  # teddywatch.decoders.FROZEN_FLAG
        from teddywatch.decodechild import main as decoder_main

        sys.exit(decoder_main(sys.argv[2:]))
    from teddywatch.cli import main

    sys.exit(main())
