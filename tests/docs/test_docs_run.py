"""Docs that run: every ```` ```python runnable ```` block in README.md and docs/**/*.md is executed.

Blocks are found when the suite is collected, so a block anyone adds later runs too. Each block runs
on its own, as a file, in a fresh ``python`` process whose working directory is an empty temporary
directory (the embedded SQLite default lands there), with a random ``KEYFOB_SECRET`` and no other
``KEYFOB_*`` variable, under a timeout. A failure names the Markdown file and line of the block, and
the traceback's lines are translated to lines of the Markdown file.

Only the info string ``python runnable`` marks a block; plain ``python`` blocks are illustrations.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 60  # seconds per block: a block should take a few; this is for a loaded CI machine
_FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`]*?)\s*$")


@dataclass(frozen=True)
class Block:
    path: Path  # the Markdown file
    line: int  # 1-based line of the opening fence
    code: str

    @property
    def where(self) -> str:
        try:
            shown = self.path.relative_to(ROOT)
        except ValueError:
            shown = self.path
        return f"{shown}:{self.line}"


def runnable_blocks(path: Path) -> list[Block]:
    """The ```` ```python runnable ```` blocks of one Markdown file (CommonMark fences: ``` or ~~~)."""
    blocks: list[Block] = []
    lines = path.read_text(encoding="utf-8").splitlines()
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if opening is None:
            i += 1
            continue
        fence, info = opening["fence"], opening["info"]
        # the closing fence: the same character, at least as long, nothing after it
        end = i + 1
        while end < len(lines):
            closing = _FENCE.match(lines[end])
            if closing and closing["fence"][0] == fence[0] and len(closing["fence"]) >= len(fence) \
                    and not closing["info"]:
                break
            end += 1
        if info.split() == ["python", "runnable"]:
            body = lines[i + 1 : end]
            indent = len(opening["indent"])
            code = "\n".join(ln[indent:] if ln[:indent].strip() == "" else ln for ln in body)
            blocks.append(Block(path, i + 1, code + "\n"))
        i = end + 1
    return blocks


def doc_files() -> list[Path]:
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def all_blocks() -> list[Block]:
    return [block for path in doc_files() if path.exists() for block in runnable_blocks(path)]


def run_block(block: Block, workdir: Path) -> str | None:
    """Run one block; None when it succeeds, else a message that names the file and line."""
    script = workdir / "docs_block.py"
    script.write_text(block.code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KEYFOB_", "AUTH_SECRET"))}
    env["KEYFOB_SECRET"] = secrets.token_urlsafe(32)
    try:
        done = subprocess.run([sys.executable, str(script)], cwd=workdir, env=env, capture_output=True,
                              text=True, timeout=TIMEOUT, stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return f"{block.where}: the runnable block did not finish in {TIMEOUT} s"
    if done.returncode == 0:
        return None
    # "File ".../docs_block.py", line 7" → the line of the Markdown file
    stderr = re.sub(
        r'File "[^"]*docs_block\.py", line (\d+)',
        lambda m: f'File "{block.where.rsplit(":", 1)[0]}", line {block.line + int(m.group(1))}',
        done.stderr,
    )
    tail = "\n".join(stderr.strip().splitlines()[-25:])
    return f"{block.where}: the runnable block exited with {done.returncode}\n{tail}\n{done.stdout[-2000:]}"


BLOCKS = all_blocks()


@pytest.mark.parametrize("block", BLOCKS, ids=[b.where for b in BLOCKS])
def test_runnable_block_runs(block: Block, tmp_path: Path) -> None:
    failure = run_block(block, tmp_path)
    if failure is not None:
        pytest.fail(failure, pytrace=False)


# -- the runner itself --------------------------------------------------------------------------------

SAMPLE = """\
# A page

```python
this is an illustration, never run
```

```python runnable
import os
assert os.environ["KEYFOB_SECRET"]
assert not os.listdir(".") or os.listdir(".") == ["docs_block.py"]
```

~~~~python runnable
print("tilde fences work", "```")
~~~~

   ```python runnable
   x = 1
   raise SystemExit(x - 1)
   ```
"""


def test_only_python_runnable_blocks_are_found_with_their_lines(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(SAMPLE)
    blocks = runnable_blocks(page)
    assert [b.line for b in blocks] == [7, 13, 17]
    assert blocks[1].code == 'print("tilde fences work", "```")\n'
    assert blocks[2].code == "x = 1\nraise SystemExit(x - 1)\n"
    for block in blocks:
        workdir = tmp_path / f"run{block.line}"
        workdir.mkdir()
        assert run_block(block, workdir) is None, block.where


def test_a_failing_block_is_reported_with_its_file_and_line(tmp_path: Path) -> None:
    page = tmp_path / "broken.md"
    page.write_text("Intro\n\n```python runnable\nx = 1\n\nraise RuntimeError('the docs are wrong')\n```\n")
    [block] = runnable_blocks(page)
    failure = run_block(block, tmp_path)
    assert failure is not None
    assert failure.startswith(f"{page}:3: the runnable block exited with 1")
    assert f'File "{page}", line 6' in failure and "RuntimeError: the docs are wrong" in failure


def test_the_docs_have_runnable_blocks_where_they_should() -> None:
    found = {b.path.relative_to(ROOT).as_posix() for b in BLOCKS}
    assert "README.md" in found
    for page in ("docs/quickstart/fastapi.md", "docs/quickstart/starlette.md"):
        assert [b.path for b in BLOCKS].count(ROOT / page) == 1, f"{page} needs exactly one runnable block"
    quickstarts = sorted((ROOT / "docs" / "quickstart").glob("*.md"))
    for page in quickstarts:  # flask.md and django.md too, once they exist: one complete file each
        assert len(runnable_blocks(page)) == 1, f"{page.relative_to(ROOT)} must be one complete runnable file"
