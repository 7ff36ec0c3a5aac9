"""Print the README's set-up commands, one per line: the install command, then the test command.

They are the first line of the first two ```bash blocks under "## Set-up", so CI runs exactly
what a new user is told to run (tests/test_dependencies.py checks the same two blocks).
"""

import re
import sys
from pathlib import Path

text = Path(__file__).resolve().parents[1].joinpath("README.md").read_text()
section = text.split("\n## Set-up\n", 1)[1].split("\n## ", 1)[0]
commands = [block.strip().splitlines()[0] for block in re.findall(r"^```bash\n(.*?)^```", section, re.S | re.M)[:2]]
if len(commands) != 2:
    sys.exit("README.md: the Set-up section needs an install block and a test block (```bash)")
print("\n".join(commands))
