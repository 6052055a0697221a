"""The docs say what the code does: version, options and their defaults, allowed hosts, stream
naming and benchmark figures in README.md and docs/convex.md are checked against Cargo.toml,
spec.json, metadata.yaml, the binary itself and BENCHMARKS.md."""

from __future__ import annotations

import json
import re

from harness import IT_DIR, REPO_ROOT, crate_version, run_connector

README = (REPO_ROOT / "README.md").read_text()
DOCS = (REPO_ROOT / "docs" / "convex.md").read_text()
SPEC = json.loads((REPO_ROOT / "spec.json").read_text())["connectionSpecification"]
BENCH = (REPO_ROOT / "BENCHMARKS.md").read_text()
METADATA = (REPO_ROOT / "metadata.yaml").read_text()


def without_changelog(text: str) -> str:
    return text.split("## Changelog")[0]


def test_every_stated_version_is_the_crates():
    version = crate_version()
    assert f"dockerImageTag: {version}" in METADATA
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    for text, where in [(README, "README.md"), (without_changelog(DOCS), "docs/convex.md"),
                        (dockerfile, "Dockerfile")]:
        stated = set(re.findall(r"source[-_]convex[:-](\d+\.\d+\.\d+)", text))
        stated |= set(re.findall(r"airbyte_source_convex-(\d+\.\d+\.\d+)", text))
        assert stated == {version}, f"{where} names versions {stated}, the crate is {version}"
    changelog = DOCS.split("## Changelog")[1]
    assert f"| {version} |" in changelog, "the changelog has no row for this version"


def test_the_options_table_is_the_spec():
    rows = {}
    for line in DOCS.splitlines():
        m = re.match(r"\| `([a-z_]+)` \| (yes|no) \|\s*([^|]*?)\s*\|", line)
        if m:
            rows[m.group(1)] = (m.group(2), m.group(3).strip())
    assert set(rows) == set(SPEC["properties"]), set(rows) ^ set(SPEC["properties"])
    for name, prop in SPEC["properties"].items():
        required, default = rows[name]
        assert (required == "yes") == (name in SPEC["required"]), name
        if "default" in prop:
            want = str(prop["default"]).lower()
            assert default.strip("`").split(" ")[0].lower() == want, (name, default, want)
        if "enum" in prop:
            for value in prop["enum"]:
                assert f"`{value}`" in DOCS, (name, value)
    # The README names every option a user sets today (not the deprecated one).
    for name in SPEC["properties"]:
        if name not in SPEC["required"] and name != "concurrency":
            assert f"`{name}`" in README, name


def test_allowed_hosts_are_the_ones_the_docs_tell_users_to_use():
    allowed = METADATA.split("allowedHosts:")[1].split("releases:")[0]
    hosts = re.findall(r'^\s+- "([^"]+)"$', allowed, re.M)
    assert hosts == ["*.convex.cloud"], hosts
    assert "convex.cloud" in DOCS
    # A host the docs call a wrong URL is not allowed.
    assert "*.convex.site" not in METADATA


def test_stream_naming_is_what_discover_does(fixed_emulator):
    run = run_connector(["discover", "--config", IT_DIR / "config.json"])
    streams = run.of_type("CATALOG")[0]["catalog"]["streams"]
    named = {(s["name"], s.get("namespace")) for s in streams}
    assert ("users", None) in named
    assert ("betterAuth/users", "betterAuth") in named
    # The docs' table says the same.
    assert "| `users` in component `betterAuth` | `betterAuth/users` | `betterAuth` |" in DOCS


def numbers(text: str):
    for m in re.finditer(r"(?<![\w.])(\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(k)?(?![\w.])", text):
        raw, k = m.group(1), m.group(2)
        value = float(raw.replace(",", ""))
        decimals = len(raw.split(".")[1]) if "." in raw else 0
        yield raw + (k or ""), value * (1000 if k else 1), (-3 if k else decimals)


def test_the_readme_performance_figures_are_the_recorded_runs():
    para = README.split("## Performance")[1].split("## The Convex emulator")[0]
    para = para.split("In the run recorded there")[1]
    recorded = [v for _, v, _ in numbers(BENCH)]
    for text, value, decimals in numbers(para):
        if value <= 20 and decimals == 0:
            continue  # counts of the scenarios' names (2 × 100k, 16 tables, 8 tables, 1M)
        assert any(round(r, decimals) == round(value, decimals) for r in recorded), \
            f"README's {text} is not a figure of BENCHMARKS.md"


def test_the_package_description_has_no_link_that_breaks_outside_the_repository():
    pyproject = (REPO_ROOT / "pyproject.toml").read_text()
    readme = re.search(r'^readme = "([^"]+)"', pyproject, re.M).group(1)
    text = (REPO_ROOT / readme).read_text()
    links = re.findall(r"\]\(([^)]+)\)", text) + re.findall(r"<(https?://[^>]+)>", text)
    assert links, "the description links to the docs"
    assert all(link.startswith("https://") for link in links), links
