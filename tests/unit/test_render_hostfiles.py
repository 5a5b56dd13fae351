"""The host files beside /etc/nccl.conf: profile.d, the /etc/hosts managed block, NetworkManager, modules-load.d."""

from __future__ import annotations

import pytest

from sparkd.render.hostfiles import (
    HOSTS_BEGIN,
    HOSTS_END,
    find_hosts_block,
    merge_hosts,
    render_hosts_block,
    render_modules_load,
    render_nm_unmanaged,
    render_profile,
)

ENTRIES = [("192.168.100.1", "spark-1"), ("192.168.100.2", "spark-2")]
BLOCK = (
    "# BEGIN sparkd managed block: do not edit, `sparkctl-client host apply` rewrites it\n"
    "192.168.100.1 spark-1\n"
    "192.168.100.2 spark-2\n"
    "# END sparkd managed block\n"
)
UBUNTU = "127.0.0.1 localhost\n127.0.1.1 spark-1\n\n# IPv6\n::1 ip6-localhost ip6-loopback\n"


# profile.d


def test_profile_exact_bytes() -> None:
    env = {"NCCL_SOCKET_IFNAME": "=enp1s0f1np1", "NCCL_IB_HCA": "=rocep1s0f1,roceP2p1s0f1", "NCCL_IB_TC": "106"}
    assert render_profile(env) == (
        b"# Managed by sparkd: rewritten on every host apply. The NCCL settings of /etc/nccl.conf, for login shells.\n"
        b"export NCCL_SOCKET_IFNAME='=enp1s0f1np1'\n"
        b"export NCCL_IB_HCA='=rocep1s0f1,roceP2p1s0f1'\n"
        b"export NCCL_IB_TC='106'\n"
    )


def test_profile_quotes_single_quotes_and_shell_syntax() -> None:
    out = render_profile({"X": "it's $HOME `id`"}).decode().splitlines()[-1]
    assert out == "export X='it'\"'\"'s $HOME `id`'"


def test_profile_with_no_settings_is_the_header() -> None:
    assert render_profile({}).decode().count("\n") == 1


@pytest.mark.parametrize("name", ["A-B", "1A", "", "A B", "A=B", "A;B", "\u00c9T\u00c9"])
def test_profile_refuses_names_that_are_not_shell_identifiers(name: str) -> None:
    with pytest.raises(ValueError, match="shell variable"):
        render_profile({name: "1"})


@pytest.mark.parametrize("value", ["a\nb", "a\rb", "a\x00b"])
def test_profile_refuses_control_characters_in_values(value: str) -> None:
    with pytest.raises(ValueError, match="printable"):
        render_profile({"NCCL_X": value})


# /etc/hosts


def test_hosts_block_exact_text() -> None:
    assert render_hosts_block(ENTRIES) == BLOCK
    assert BLOCK.startswith(HOSTS_BEGIN + "\n") and BLOCK.endswith(HOSTS_END + "\n")


def test_hosts_appended_to_a_file_ending_with_a_newline() -> None:
    assert merge_hosts(UBUNTU, ENTRIES) == UBUNTU + BLOCK


def test_hosts_appended_to_a_file_without_trailing_newline() -> None:
    assert merge_hosts("127.0.0.1 localhost", ENTRIES) == "127.0.0.1 localhost\n" + BLOCK[:-1]


def test_hosts_of_an_absent_or_empty_file_is_the_block() -> None:
    assert merge_hosts(None, ENTRIES) == BLOCK
    assert merge_hosts("", ENTRIES) == BLOCK
    assert merge_hosts(None, []) == ""


STALE = "# BEGIN sparkd managed block: do not edit, `sparkctl-client host apply` rewrites it\n10.0.0.9 old\n" + (
    "# END sparkd managed block\n"
)
ORIGINALS = [
    "",
    UBUNTU,
    "127.0.0.1 localhost",
    "127.0.0.1 localhost\n\n\n",
    "127.0.0.1 localhost\r\n::1 localhost\r\n",
    "127.0.0.1 localhost\r\n::1 localhost",
    "127.0.0.1 localhost\r",
    "\n",
    "# only a comment\n\t 10.1.1.1   nas  \n",
]


@pytest.mark.parametrize("original", ORIGINALS)
def test_hosts_add_then_remove_gives_back_the_original(original: str) -> None:
    added = merge_hosts(original, ENTRIES)
    assert HOSTS_BEGIN in added
    assert merge_hosts(added, []) == original


@pytest.mark.parametrize("original", ORIGINALS)
def test_hosts_merge_is_idempotent(original: str) -> None:
    once = merge_hosts(original, ENTRIES)
    assert merge_hosts(once, ENTRIES) == once
    assert merge_hosts(merge_hosts(once, []), []) == original


@pytest.mark.parametrize("original", ORIGINALS)
def test_hosts_changing_entries_keeps_the_round_trip(original: str) -> None:
    changed = merge_hosts(merge_hosts(original, ENTRIES), [("192.168.100.7", "spark-7")])
    assert "192.168.100.7 spark-7\n" in changed and "spark-2" not in changed
    assert merge_hosts(changed, []) == original


def test_hosts_stale_block_in_the_middle_is_replaced_in_place() -> None:
    before, after = "127.0.0.1 localhost\r\n", "::1 ip6-localhost\n10.1.1.1 nas"
    merged = merge_hosts(before + STALE + after, ENTRIES)
    assert merged == before + BLOCK + after
    assert merge_hosts(merged, ENTRIES) == merged
    assert merge_hosts(merged, []) == before + after
    assert merge_hosts(before + STALE + after, []) == before + after


def test_hosts_block_found_with_an_edited_begin_marker_and_crlf() -> None:
    text = "a\n# BEGIN sparkd managed block (edited)\r\n10.0.0.9 old\r\n# END sparkd managed block\r\nb\n"
    assert find_hosts_block(text) == (1, 3)
    assert merge_hosts(text, ENTRIES) == "a\n" + BLOCK + "b\n"


def test_hosts_without_a_block_is_untouched_when_there_is_nothing_to_remove() -> None:
    assert merge_hosts(UBUNTU, []) == UBUNTU
    assert find_hosts_block(UBUNTU) is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (UBUNTU + STALE + STALE, "2 `# BEGIN"),
        (UBUNTU + HOSTS_BEGIN + "\n10.0.0.9 old\n", "1 `# BEGIN sparkd managed block` and 0"),
        (UBUNTU + "# END sparkd managed block\n", "0 `# BEGIN"),
        ("# END sparkd managed block\n" + HOSTS_BEGIN + "\n", "before BEGIN"),
    ],
)
def test_hosts_refuses_to_guess_on_broken_markers(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        merge_hosts(text, ENTRIES)
    with pytest.raises(ValueError, match="by hand"):
        merge_hosts(text, [])


@pytest.mark.parametrize(
    "entry",
    [
        ("192.168.100.256", "spark-1"),
        ("192.168.100.01", "spark-1"),
        ("fe80::1", "spark-1"),
        (" 192.168.100.1", "spark-1"),
        ("192.168.100.1", ""),
        ("192.168.100.1", "-spark"),
        ("192.168.100.1", "spark-"),
        ("192.168.100.1", "spark_1"),
        ("192.168.100.1", "spark 1"),
        ("192.168.100.1", "spark-1\n10.0.0.1 evil"),
        ("192.168.100.1", "spark..lan"),
        ("192.168.100.1", "a" * 64),
        ("192.168.100.1", ".".join(["a" * 63] * 4)),  # 255 characters
    ],
)
def test_hosts_refuses_bad_entries(entry: tuple[str, str]) -> None:
    with pytest.raises(ValueError):
        merge_hosts(UBUNTU, [entry])


def test_hosts_accepts_a_long_dotted_name_and_several_names_per_address() -> None:
    name = ".".join(["a" * 63] * 3 + ["b" * 61])  # 253 characters
    entries = [("192.168.100.1", name), ("192.168.100.1", "spark-1.lan")]
    assert render_hosts_block(entries).splitlines()[1:3] == [f"192.168.100.1 {name}", "192.168.100.1 spark-1.lan"]


def test_hosts_refuses_a_name_listed_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        render_hosts_block([("192.168.100.1", "spark-1"), ("192.168.100.2", "Spark-1")])


# NetworkManager


def test_nm_unmanaged_exact_bytes() -> None:
    assert render_nm_unmanaged(["enp1s0f1np1", "enP2p1s0f1np1"]) == (
        b"# Managed by sparkd: rewritten on every host apply. NetworkManager leaves the interconnect twins to sparkd.\n"
        b"[keyfile]\n"
        b"unmanaged-devices+=interface-name:=enp1s0f1np1;interface-name:=enP2p1s0f1np1\n"
    )


@pytest.mark.parametrize(
    "netdevs", [[], ["enp1s0*"], ["a;b"], ["a,b"], ["a\\b"], ["en p1"], ["x" * 16], [".."], ["", "a"], ["a", "a"]]
)
def test_nm_unmanaged_refuses_bad_netdevs(netdevs: list[str]) -> None:
    with pytest.raises(ValueError):
        render_nm_unmanaged(netdevs)


# modules-load.d


def test_modules_load_exact_bytes() -> None:
    assert render_modules_load(["nvidia-peermem"]) == (
        b"# Managed by sparkd: rewritten on every host apply. Kernel modules the interconnect needs.\nnvidia-peermem\n"
    )


@pytest.mark.parametrize(
    "modules",
    [[], [""], ["nvidia peermem"], ["a/b"], ["#x"], ["a\nb"], ["m" * 56], ["nvidia-peermem", "nvidia_peermem"]],
)
def test_modules_load_refuses_bad_names(modules: list[str]) -> None:
    with pytest.raises(ValueError):
        render_modules_load(modules)
