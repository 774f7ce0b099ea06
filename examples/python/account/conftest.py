"""pytest set-up: the helper package `cairn_sdk` lives one folder up, as it does on
componentize-py's path (`-p ..`) when the component is built."""

import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))
