"""The stand-ins' parsers (sparkd/lab/standins/flags.py) and their table (framework_flags.yaml)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from sparkd.lab import frameworks
from sparkd.lab.standins import flags, sglang, trtllm, vllm
from sparkd.lab.standins.flags import Flag

FACTS = Path(__file__).resolve().parents[3] / "shared/reference/framework-facts.md"
#: Section 3's flag mappings, per framework, as the table copies them.
FACT_SECTIONS = {
    "vllm": ("common_flags", "multinode_mp.all_nodes", "multinode_mp.worker_only"),
    "ray": ("start_head", "start_worker"),
    "sglang": ("common_flags", "multinode.all_nodes"),
    "trtllm": ("common_flags",),
}


def value(f: Flag) -> list[str]:
    """A valid argv piece for `f` (nothing after a bool flag)."""
    if f.type == "enum":
        return [f.choices[-1]]
    return {
        "int": ["2"],
        "float": ["0.5"],
        "str": ["x"],
        "bool": [],
        "boolval": ["false"],
        "json": ['{"a": 1}'],
        "hostport": ["10.0.0.1:20000"],
    }[f.type]


def positionals(entrypoint: str) -> list[str]:
    return ["/models/demo"] * len(flags.ENTRYPOINTS[entrypoint].positionals)


@pytest.mark.parametrize("entrypoint", sorted(flags.ENTRYPOINTS))
def test_every_flag_and_alias_of_the_table_parses(entrypoint: str) -> None:
    table_flags = flags.flags(entrypoint)
    assert table_flags
    argv = positionals(entrypoint)
    for f in table_flags:
        argv += [f.name, *value(f)]
    args = flags.parser(entrypoint).parse_args(argv)
    for f in table_flags:
        got = getattr(args, f.dest)
        assert got is True if f.type == "bool" else got is not None, f.name
    for f in table_flags:
        for alias in f.aliases:
            alone = flags.parser(entrypoint).parse_args([*positionals(entrypoint), alias, *value(f)])
            assert getattr(alone, f.dest) == getattr(args, f.dest), alias


@pytest.mark.parametrize("entrypoint", sorted(flags.ENTRYPOINTS))
def test_an_unknown_flag_exits_2(entrypoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as e:
        flags.parser(entrypoint).parse_args([*positionals(entrypoint), "--no-such-flag", "1"])
    assert e.value.code == 2
    assert "unrecognized arguments: --no-such-flag" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("entrypoint", "argv"),
    [
        ("vllm serve", ["--speculative-model", "/models/draft"]),  # removed in vLLM 0.8-era
        ("vllm serve", ["--num-speculative-tokens", "5"]),
        ("vllm serve", ["--tensor-parallel", "2"]),  # a prefix: vLLM would take it, sparkd must not emit it
        ("sglang serve", ["--tp", "2"]),  # works in real SGLang only by prefix abbreviation
        ("sglang serve", ["--tp_size", "2"]),  # SGLang rejects underscores
        ("trtllm-serve", ["--tp-size", "2"]),  # trtllm-serve's click options are underscored
        ("trtllm-serve", ["--engine_dir", "/engines/x"]),  # never existed
        ("ray start", ["--num_cpus", "2"]),  # click matches dashed names exactly
        ("vllm serve", ["--tensor-parallel-size", "two"]),  # a bad value is argparse's exit 2 too
        ("sglang serve", ["--dist-init-addr", "10.0.0.1"]),  # hostport without a port
        ("trtllm-serve", ["--log_level", "loud"]),
    ],
)
def test_what_the_real_parsers_refuse_exits_2(entrypoint: str, argv: list[str]) -> None:
    with pytest.raises(SystemExit) as e:
        flags.parser(entrypoint).parse_args([*positionals(entrypoint), *argv])
    assert e.value.code == 2


def test_vllm_takes_underscores_and_its_boolean_inverses() -> None:
    p = vllm.parser()
    args = p.parse_args(
        ["serve", "/m", "--tensor_parallel_size", "2", "--served_model_name=x", "--no-enable-prefix-caching"]
    )
    assert (args.tensor_parallel_size, args.served_model_name, args.enable_prefix_caching) == (2, "x", False)
    assert p.parse_args(["serve", "/m", "--enable-chunked-prefill"]).enable_chunked_prefill is True
    assert p.parse_args(["serve", "/m", "--no-enable-chunked-prefill"]).enable_chunked_prefill is False
    assert p.parse_args(["serve", "/m", "--disable-chunked-prefill"]).enable_chunked_prefill is False
    assert p.parse_args(["serve", "/m", "--disable-log-requests"]).enable_log_requests is False
    assert p.parse_args(["serve", "/m"]).enable_chunked_prefill is None  # vLLM's own default applies
    assert p.parse_args(["serve", "/m", "-tp", "1", "-pp", "2", "-n", "2", "-r", "1"]).node_rank == 1
    speculative = p.parse_args(["serve", "/m", "--speculative-config", '{"method": "ngram"}']).speculative_config
    assert speculative == {"method": "ngram"}


def test_human_readable_ints() -> None:
    p = vllm.parser()
    assert p.parse_args(["serve", "/m", "--max-num-batched-tokens", "8k"]).max_num_batched_tokens == 8000
    assert p.parse_args(["serve", "/m", "--max-num-batched-tokens", "8K"]).max_num_batched_tokens == 8192
    assert p.parse_args(["serve", "/m", "--max-model-len", "25.6k"]).max_model_len == 25600
    assert p.parse_args(["serve", "/m", "--max-model-len", "auto"]).max_model_len == -1
    assert sglang.parser().parse_args(["serve", "--max-prefill-tokens", "16k"]).max_prefill_tokens == 16000
    with pytest.raises(SystemExit):
        p.parse_args(["serve", "/m", "--max-num-seqs", "8k"])  # not a human-readable flag


def test_defaults_of_the_stand_ins() -> None:
    v = vllm.parser().parse_args(["serve", "/m"])
    assert (v.port, v.master_port, v.gpu_memory_utilization, v.nnodes) == (8000, 29501, 0.92, 1)
    s = sglang.parser().parse_args(["serve", "--model", "/m", "--chunked-prefill-size", "-1"])
    assert (s.model_path, s.host, s.port, s.chunked_prefill_size) == ("/m", "127.0.0.1", 30000, -1)
    t = trtllm.serve_parser().parse_args(["/m", "--tensor_parallel_size", "2"])
    assert (t.tp_size, t.host, t.port, t.pp_size) == (2, "localhost", 8000, 1)
    r = flags.parser("ray start").parse_args(["--head", "--include-dashboard", "false", "--port=6379"])
    assert (r.head, r.include_dashboard, r.port, r.min_worker_port, r.block) == (True, False, 6379, 10002, None)


def test_no_enum_is_cut_short_and_every_added_flag_names_its_source() -> None:
    text = flags.TABLE.read_text()
    assert "..." not in "".join(re.findall(r"enum\[[^\]]*\]", text))
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.strip() != "added_flags:" and not line.lstrip().startswith("added_flags:"):
            continue
        indent = len(line) - len(line.lstrip())
        block = []
        for later in lines[i + 1 :]:
            if later.strip() and len(later) - len(later.lstrip()) <= indent:
                break
            block.append(later)
        for j, entry in enumerate(block):
            if entry.strip().startswith("--"):
                said = entry + line + "".join(block[max(0, j - 4) : j])  # its own, its section's or a comment above
                assert "verified" in said, entry


@pytest.mark.skipif(not FACTS.exists(), reason="shared/reference/framework-facts.md is not beside the repo")
def test_the_table_copies_framework_facts_section_3() -> None:
    section = FACTS.read_text().split("## 3. Machine-readable", 1)[1]
    block = re.search(r"```yaml\n(.*?)```", section, re.S)
    assert block is not None
    facts = yaml.safe_load(block[1])
    ours = flags.table()
    for framework, sections in FACT_SECTIONS.items():
        for dotted in sections:
            theirs, mine = facts[framework], ours[framework]
            for part in dotted.split("."):
                theirs, mine = theirs[part], mine[part]
            assert list(theirs) == list(mine), f"{framework}.{dotted}"
            for name, spec in theirs.items():
                fact_type = spec["type"] if isinstance(spec, dict) else spec
                flag = flags._flag(name, name, mine[name])
                assert re.split(r"[\[(]", fact_type)[0] == flag.type, name
                if fact_type.startswith("enum["):
                    listed = [c.strip() for c in fact_type[5:-1].split(",") if c.strip() != "..."]
                    assert set(listed) <= set(flag.choices), name
                    if "..." not in fact_type:
                        assert list(flag.choices) == listed, name


def test_the_lab_framework_venvs_carry_their_versions(tmp_path: Path) -> None:
    frameworks.write_lab_framework_venvs(tmp_path, "/var/lib/sparkd-lab/frameworks")
    site = "lib/python3.12/site-packages"
    base = tmp_path / "var/lib/sparkd-lab/frameworks"
    assert (base / "sglang" / site / "sglang-0.5.23.dist-info").is_dir()
    assert (base / "trtllm" / site / "tensorrt_llm-1.2.1.dist-info").is_dir()
    assert (base / "vllm" / site / "vllm-0.33.0.dist-info").is_dir()
    assert (base / "trtllm" / site / "nvidia/nccl/lib/libnccl.so.2").read_bytes() == frameworks.NCCL_STAND_IN
