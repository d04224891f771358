"""The README and docs/ point at what exists: every relative link and image resolves to a file,
every `make TARGET` they name is a target of the Makefile, every `python -m resnet_jax.X` is a
module of the package and every repository path they name in code is a file. Text only: no
import of the package, well under a second."""
import glob
import os
import re
import shlex

import pytest
from config_files import REPO

DOCS = sorted([os.path.join(REPO, "README.md")] + glob.glob(os.path.join(REPO, "docs", "*.md")))
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
# [text](target) and ![alt](target); the target ends at the first space or closing bracket.
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
CODE_SPAN = re.compile(r"`([^`]+)`")
MAKE = re.compile(r"\bmake[ \t\n]+([^\n#;`|)]*)")
# A Makefile rule's targets: "name other: ..." (not "VAR := ...", "VAR ?= ...").
RULE = re.compile(r"^([A-Za-z0-9_./$()-]+(?:[ \t]+[A-Za-z0-9_./$()-]+)*)[ \t]*:(?!=)", re.M)
TARGET = re.compile(r"[a-z0-9][a-z0-9.-]*\*?")
MODULE = re.compile(r"python -m (resnet_jax(?:\.[a-z_0-9]+)+)")
REPO_PATH = re.compile(r"(?<![\w./-])((?:benchmarks|experiments|notebooks|tests|src|requirements|"
                       r"docs|\.ci)/[\w./-]*\.(?:py|ipynb|txt|md|png|cfg))")


def _read(path: str) -> str:
  with open(path, encoding="utf-8") as f:
    return f.read()


def _code(text: str) -> list[str]:
  """The fenced blocks and the inline code spans of a markdown text (spans may wrap lines)."""
  blocks = FENCE.findall(text)
  return blocks + CODE_SPAN.findall(FENCE.sub("", text))


def makefile_targets() -> set[str]:
  targets = set()
  for names in RULE.findall(_read(os.path.join(REPO, "Makefile"))):
    targets.update(n for n in names.split() if "$" not in n and "/" not in n)
  return targets


def named_targets(text: str) -> list[str]:
  """The target of every `make ...` command in the code of `text`: the first word after `make`
  that is not a VAR=value assignment (a prose word after it, "make all runs every one", is
  not a target)."""
  found = []
  for code in _code(text):
    for rest in MAKE.findall(code):
      try:
        words = shlex.split(rest)
      except ValueError:  # an unbalanced quote: a command cut at the line's end
        words = rest.split()
      words = [w for w in words if "=" not in w]
      if words and not words[0].startswith(("-", "[")) and TARGET.fullmatch(words[0]):
        found.append(words[0])
  return found


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: os.path.relpath(p, REPO))
def test_every_relative_link_and_image_resolves(doc):
  links = [t for t in LINK.findall(FENCE.sub("", _read(doc)))
           if not re.match(r"[a-z]+:", t) and not t.startswith("#")]
  missing = [t for t in links
             if not os.path.exists(os.path.join(os.path.dirname(doc), t.split("#")[0]))]
  assert not missing, f"{os.path.relpath(doc, REPO)} links to files that do not exist: {missing}"


def test_every_make_target_named_exists():
  targets = makefile_targets()
  assert {"demo", "test", "imagenet-18v34", "bench-xla-cpu"} <= targets  # the parser reads rules
  unknown, named = [], 0
  for doc in DOCS:
    for target in named_targets(_read(doc)):
      named += 1
      exists = (any(t.startswith(target[:-1]) for t in targets) if target.endswith("*")
                else target in targets)
      if not exists:
        unknown.append(f"{os.path.relpath(doc, REPO)}: make {target}")
  assert named > 20, named  # the docs' commands were found
  assert not unknown, "targets the Makefile does not have:\n" + "\n".join(unknown)


def test_every_python_module_named_exists():
  src = os.path.join(REPO, "src")
  missing = []
  for doc in DOCS:
    for module in MODULE.findall(_read(doc)):
      path = os.path.join(src, *module.split("."))
      if not (os.path.exists(path + ".py") or os.path.exists(os.path.join(path, "__main__.py"))):
        missing.append(f"{os.path.relpath(doc, REPO)}: python -m {module}")
  assert not missing, "\n".join(missing)


def test_every_repository_path_named_in_code_exists():
  missing = []
  for doc in DOCS:
    for code in _code(_read(doc)):
      for path in REPO_PATH.findall(code):
        if not os.path.exists(os.path.join(REPO, path)):
          missing.append(f"{os.path.relpath(doc, REPO)}: {path}")
  assert not missing, "\n".join(missing)


def test_the_checks_catch_what_is_missing():
  text = ("[a](docs/nope.md) `make no-such-target DATASET=x` and\n"
          "```bash\nmake imagenet-18v34 IMAGENET_DATASET=imagenet_fixture  # make all runs\n```\n")
  assert LINK.findall(text) == ["docs/nope.md"]
  assert named_targets(text) == ["imagenet-18v34", "all", "no-such-target"]
