"""Name patterns shared by funccount and funclatency (fullmatch: `$` would pass a final newline)."""
from __future__ import annotations

import re

KERNEL_NAME = re.compile(r"[A-Za-z0-9_.*?]+")
EVENT_NAME = re.compile(r"[A-Za-z0-9_*?]+")
USER_NAME = re.compile(r"[A-Za-z0-9_.*?@$]+")
