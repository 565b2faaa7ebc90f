"""``python -m grmodel.cli``: how torchrun and a PyTorchJob start ``grmodel train``."""

import sys

from grmodel.cli import main

sys.exit(main())
