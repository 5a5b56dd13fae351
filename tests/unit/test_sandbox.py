"""As whom deployment units run, and their sandbox: the policy (sparkd.engine.sandbox), the config fields
`frameworks.user`/`frameworks.groups` and the account checks at start-up (sparkd.accounts)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace

import pytest

from sparkd import accounts
from sparkd.config import FrameworksConfig, load, parse
from sparkd.engine import sandbox
from sparkd.engine.sandbox import apply_sandbox, dynamic_user_name, sandbox_units, unit_sandbox
from sparkd.errors import ConfigError
from sparkd.model.unit import UnitSpec

RANK = UnitSpec("sparkd-demo-rank0.service", ("/opt/vllm/bin/vllm", "serve", "/models/demo"), "demo", {"A": "1"})


def test_the_default_is_a_dynamic_user_with_a_cache_directory_as_home() -> None:
    f = unit_sandbox(FrameworksConfig(), "demo", container=False)
    assert (f.user, f.dynamic_user, f.supplementary_groups) == ("sparkd-demo", True, ())
    assert f.cache_directory == ("sparkd/demo",)
    assert f.environment == {"HOME": "/var/cache/sparkd/demo", "XDG_CACHE_HOME": "/var/cache/sparkd/demo"}
    assert f.limit_memlock == "infinity"  # RDMA pins NCCL's buffers


def test_a_native_rank_keeps_the_gpu_rdma_and_jit_it_needs() -> None:
    s = unit_sandbox(FrameworksConfig(), "demo", container=False).sandbox
    assert not s.private_devices and not s.memory_deny_write_execute and not s.private_network
    assert s.device_policy == "closed"
    assert dict(s.device_allow) == {
        "char-nvidia*": "rw",
        "char-infiniband_verbs": "rw",
        "/dev/infiniband/rdma_cm": "rw",
    }
    assert set(s.restrict_address_families) == {"AF_UNIX", "AF_INET", "AF_INET6", "AF_NETLINK"}
    assert s.system_call_filter[0] == "@system-service" and s.system_call_deny == ("@privileged",)
    assert s.capability_bounding_set == () and s.ambient_capabilities == ()
    assert s.no_new_privileges and s.protect_system == "strict" and s.protect_home == "read-only"
    assert s.private_tmp and s.restrict_namespaces and s.umask == 0o077
    assert s.inaccessible_paths == ("-/etc/sparkd", "-/var/lib/sparkd", "-/run/sparkd")  # the node key


def test_sparkd_directories_other_than_the_defaults_are_hidden_too() -> None:
    f = unit_sandbox(FrameworksConfig(), "demo", False, hidden_paths=("/srv/sparkd", "-/run/x"))
    assert f.sandbox.inaccessible_paths == ("-/srv/sparkd", "-/run/x")


def test_a_named_user_runs_every_deployment_with_its_groups() -> None:
    config = FrameworksConfig(user="sparkd-engine", groups=("video", "models"))
    f = unit_sandbox(config, "demo", container=False)
    assert (f.user, f.dynamic_user, f.supplementary_groups) == ("sparkd-engine", False, ("video", "models"))
    assert f.cache_directory == ("sparkd/demo",) and f.environment["HOME"] == "/var/cache/sparkd/demo"


def test_a_container_rank_runs_only_the_docker_cli_in_a_tighter_sandbox() -> None:
    f = unit_sandbox(FrameworksConfig(groups=("video",)), "demo", container=True)
    assert f.dynamic_user and f.supplementary_groups == ("video", "docker")
    assert f.limit_memlock == ""  # the container's comes from docker run --ulimit memlock=-1:-1
    s = f.sandbox
    assert s.private_devices and s.private_network and s.memory_deny_write_execute
    assert s.restrict_address_families == ("AF_UNIX",) and s.device_allow == ()
    assert s.protect_home == "yes" and s.capability_bounding_set == ()


@pytest.mark.parametrize("user", ["root", "0", "nobody", "65534", "Root!", "-x", "1x", "a" * 32, ""])
def test_root_and_bad_names_are_refused_by_the_policy(user: str) -> None:
    with pytest.raises(ValueError, match=r"frameworks\.user"):
        unit_sandbox(FrameworksConfig(user=user), "demo", container=False)


def test_root_equivalent_groups_are_refused_by_the_policy() -> None:
    with pytest.raises(ValueError, match="root-equivalent"):
        unit_sandbox(FrameworksConfig(groups=("docker",)), "demo", container=False)
    with pytest.raises(ValueError, match="deployment name"):
        unit_sandbox(FrameworksConfig(), "../etc", container=False)


def test_apply_never_sets_root_even_from_hand_made_fields() -> None:
    f = dataclasses.replace(unit_sandbox(FrameworksConfig(), "demo", False), user="root", dynamic_user=False)
    with pytest.raises(ValueError, match="never runs as 'root'"):
        apply_sandbox(RANK, f)


def test_long_deployment_names_give_short_distinct_user_names() -> None:
    a, b = dynamic_user_name("a" * 40), dynamic_user_name("a" * 39 + "b")
    assert len(a) == len(b) == 31 and a != b and a.startswith("sparkd-aaaa")
    assert dynamic_user_name("a" * 40) == a  # stable: the same deployment, the same name
    assert accounts.ACCOUNT_RE.fullmatch(a)


def test_apply_sets_the_fields_and_keeps_the_units_own_environment() -> None:
    f = unit_sandbox(FrameworksConfig(), "demo", False)
    unit = apply_sandbox(dataclasses.replace(RANK, environment={"HOME": "/srv/home", "A": "1"}), f)
    assert (unit.user, unit.dynamic_user, unit.limit_memlock) == ("sparkd-demo", True, "infinity")
    assert unit.sandbox == f.sandbox and unit.cache_directory == ("sparkd/demo",)
    assert unit.environment == {"HOME": "/srv/home", "XDG_CACHE_HOME": "/var/cache/sparkd/demo", "A": "1"}
    assert unit.argv == RANK.argv and unit.joins_namespace_of == ()


def test_a_nodes_units_of_one_deployment_share_their_tmp() -> None:
    ray = dataclasses.replace(RANK, name="sparkd-demo-rank0-ray.service")
    pre = ("-/usr/bin/docker", "rm", "--force", "x")
    main = dataclasses.replace(RANK, exec_start_pre=(pre,), exec_stop_post=(pre,))
    first, second = sandbox_units([ray, main], unit_sandbox(FrameworksConfig(), "demo", container=True))
    assert first.joins_namespace_of == (main.name,) and second.joins_namespace_of == (ray.name,)
    assert first.user == second.user == "sparkd-demo"  # one UID: they open each other's sockets
    assert second.exec_start_pre == (pre,) and second.exec_stop_post == (pre,)  # the runtime's steps stay


def test_the_config_defaults_to_a_dynamic_user_and_no_groups() -> None:
    c = parse("")
    assert (c.frameworks.user, c.frameworks.groups) == ("dynamic", ())
    c = parse('[frameworks]\nuser = "sparkd-engine"\ngroups = ["video", "render", "video"]\n')
    assert (c.frameworks.user, c.frameworks.groups) == ("sparkd-engine", ("video", "render"))
    assert parse('[frameworks]\nuser = "1001"\n').frameworks.user == "1001"


@pytest.mark.parametrize(
    ("text", "field", "words"),
    [
        ('user = "root"', "frameworks.user", "never run as root"),
        ('user = "0"', "frameworks.user", "never run as root"),
        ('user = "nobody"', "frameworks.user", "never run as root or nobody"),
        ('user = "spark d"', "frameworks.user", "an account name"),
        ('user = "9x"', "frameworks.user", "an account name"),
        ("user = 0", "frameworks.user", "must be a str"),
        ('groups = ["docker"]', "frameworks.groups", "root-equivalent"),
        ('groups = ["sudo"]', "frameworks.groups", "root-equivalent"),
        ('groups = ["sparkd"]', "frameworks.groups", "root-equivalent"),  # the admin socket's group
        ('groups = ["a b"]', "frameworks.groups", "group names"),
        ('groups = ["0"]', "frameworks.groups", "group names"),
        ('groups = "video"', "frameworks.groups", "must be a list"),
    ],
)
def test_the_config_refuses_root_and_root_equivalent_groups(text: str, field: str, words: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(f"[frameworks]\n{text}\n", "/etc/sparkd/sparkd.toml")
    assert e.value.field == field and words in str(e.value)


def test_a_custom_admin_socket_group_is_refused_as_a_units_group() -> None:
    with pytest.raises(ConfigError, match="'ops'"):
        parse('[api]\nsocket_group = "ops"\n[frameworks]\ngroups = ["ops"]\n')


class _Db:
    """pwd/grp stand-ins: getpwnam/getgrnam over a dict of name -> id."""

    def __init__(self, ids: dict[str, int]) -> None:
        self.ids = ids

    def getpwnam(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(pw_uid=self.ids[name])

    def getgrnam(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(gr_gid=self.ids[name])


@pytest.mark.parametrize(
    ("user", "groups", "field", "words"),
    [
        ("ghost", (), "frameworks.user", "no account 'ghost' on this machine; create one (useradd --system"),
        ("toor", (), "frameworks.user", "'toor' has UID 0: it is root"),
        ("sparkd-engine", ("ghosts",), "frameworks.groups", "no group 'ghosts'"),
        ("sparkd-engine", ("wheel2",), "frameworks.groups", "'wheel2' has GID 0"),
    ],
)
def test_accounts_are_looked_up_at_start_up(user: str, groups: tuple[str, ...], field: str, words: str) -> None:
    db = _Db({"toor": 0, "sparkd-engine": 990, "wheel2": 0, "video": 44})
    with pytest.raises(ConfigError) as e:
        accounts.check_accounts(user, groups, "/etc/sparkd/sparkd.toml", passwd=db, group=db)
    assert e.value.field == field and words in str(e.value)


def test_a_dynamic_user_or_a_uid_needs_no_account() -> None:
    db = _Db({"video": 44})
    accounts.check_accounts("dynamic", ("video",), passwd=db, group=db)
    accounts.check_accounts("1001", (), passwd=db, group=db)


def test_load_stops_the_daemon_for_an_account_that_does_not_exist(tmp_path: Path) -> None:
    path = tmp_path / "sparkd.toml"
    path.write_text('[frameworks]\nuser = "sparkd-no-such-account"\n')
    with pytest.raises(ConfigError) as e:
        load(path)
    assert e.value.field == "frameworks.user" and str(path) in str(e.value)


def test_docker_is_the_only_group_the_policy_adds() -> None:
    assert sandbox.DOCKER_GROUP in accounts.REFUSED_GROUPS  # never from the config, only for a container's CLI
