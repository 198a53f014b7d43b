"""Kubernetes Pod Security Standards, checked as pod-security-admission checks them.

Each check follows one file of github.com/kubernetes/pod-security-admission `policy/` (as read at its commit
8f84a87, the checks of Kubernetes 1.34-1.37), on a pod spec as a plain dict (the rendered manifests), with
the versions that change a check. `violations(spec, meta, level, version)` returns the ids of the checks the
pod fails at that level: `baseline` runs the baseline checks, `restricted` those and the restricted ones,
where a restricted check replaces the baseline check it overrides (`OverrideCheckIDs`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

Spec = dict[str, Any]
Meta = dict[str, Any]
LEVELS = ("privileged", "baseline", "restricted")


def _containers(spec: Spec) -> Iterator[Spec]:
    """policy/visitor.go visitContainers: init containers, containers, ephemeral containers."""
    for key in ("initContainers", "containers", "ephemeralContainers"):
        yield from spec.get(key) or []


def _sc(container: Spec) -> Spec:
    return container.get("securityContext") or {}


def _pod_sc(spec: Spec) -> Spec:
    return spec.get("securityContext") or {}


def _user_namespace(spec: Spec) -> bool:
    """policy/helpers.go relaxPolicyForUserNamespacePod: hostUsers false."""
    return spec.get("hostUsers") is False


def _windows(spec: Spec) -> bool:
    return (spec.get("os") or {}).get("name") == "windows"


# -- baseline ----------------------------------------------------------------------------------------------


def host_namespaces(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_hostNamespaces.go: hostNetwork, hostPID, hostIPC undefined or false."""
    return not any(spec.get(key) for key in ("hostNetwork", "hostPID", "hostIPC"))


def privileged(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_privileged.go: securityContext.privileged false or undefined."""
    return not any(_sc(c).get("privileged") is True for c in _containers(spec))


CAPABILITIES_ALLOWED_BASELINE = {
    "AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD", "NET_BIND_SERVICE", "SETFCAP",
    "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT",
}  # fmt: skip


def capabilities_baseline(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_capabilities_baseline.go: capabilities.add only from the default set."""
    return all(
        set((_sc(c).get("capabilities") or {}).get("add") or []) <= CAPABILITIES_ALLOWED_BASELINE
        for c in _containers(spec)
    )


def host_path_volumes(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_hostPathVolumes.go: no hostPath volume."""
    return not any("hostPath" in volume for volume in spec.get("volumes") or [])


def host_ports(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_hostPorts.go: hostPort undefined or 0."""
    return not any(port.get("hostPort") for c in _containers(spec) for port in c.get("ports") or [])


def _app_armor_ok(profile: dict | None) -> bool:
    return profile is None or profile.get("type") in ("RuntimeDefault", "Localhost")


def app_armor_profile(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_appArmorProfile.go: appArmorProfile.type RuntimeDefault, Localhost or undefined; the beta
    annotations runtime/default, localhost/* or empty."""
    annotations = meta.get("annotations") or {}
    for key, value in annotations.items():
        beta = key.startswith("container.apparmor.security.beta.kubernetes.io/")
        if beta and value and value != "runtime/default" and not value.startswith("localhost/"):
            return False
    return _app_armor_ok(_pod_sc(spec).get("appArmorProfile")) and all(
        _app_armor_ok(_sc(c).get("appArmorProfile")) for c in _containers(spec)
    )


def _selinux_ok(options: dict | None, version: tuple[int, int]) -> bool:
    if options is None:
        return True
    allowed = {"", "container_t", "container_init_t", "container_kvm_t"}
    if version >= (1, 31):
        allowed.add("container_engine_t")
    return options.get("type", "") in allowed and not options.get("user") and not options.get("role")


def selinux_options(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_seLinuxOptions.go: type among the container types (container_engine_t from 1.31), no user, no role."""
    return _selinux_ok(_pod_sc(spec).get("seLinuxOptions"), version) and all(
        _selinux_ok(_sc(c).get("seLinuxOptions"), version) for c in _containers(spec)
    )


def _proc_mount_default(spec: Spec) -> bool:
    return all(_sc(c).get("procMount") in (None, "Default") for c in _containers(spec))


def proc_mount(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_procMount_baseline.go: procMount Default or undefined; from 1.35 anything in a user namespace."""
    if version >= (1, 35) and _user_namespace(spec):
        return True
    return _proc_mount_default(spec)


def _seccomp_ok(profile: dict | None) -> bool:
    return profile is None or profile.get("type") in ("RuntimeDefault", "Localhost")


def seccomp_profile_baseline(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_seccompProfile_baseline.go (1.19+): seccompProfile.type RuntimeDefault, Localhost or undefined."""
    return _seccomp_ok(_pod_sc(spec).get("seccompProfile")) and all(
        _seccomp_ok(_sc(c).get("seccompProfile")) for c in _containers(spec)
    )


SYSCTLS_ALLOWED = {
    (1, 0): {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
             "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"},
    (1, 27): {"net.ipv4.ip_local_reserved_ports"},
    (1, 29): {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
              "net.ipv4.tcp_keepalive_probes"},
    (1, 32): {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"},
    (1, 37): {"net.ipv4.tcp_slow_start_after_idle", "net.ipv4.tcp_notsent_lowat"},
}  # fmt: skip


def sysctls(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_sysctls.go: only the safe sysctls of that version."""
    allowed = set().union(*(names for since, names in SYSCTLS_ALLOWED.items() if version >= since))
    return all(s.get("name") in allowed for s in _pod_sc(spec).get("sysctls") or [])


def windows_host_process(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_windowsHostProcess.go: windowsOptions.hostProcess false or undefined."""
    setters = [_pod_sc(spec), *(_sc(c) for c in _containers(spec))]
    return not any((s.get("windowsOptions") or {}).get("hostProcess") is True for s in setters)


def host_probes_and_host_lifecycle(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_hostProbesAndhostLifecycle.go (1.34+): no `host` in httpGet / tcpSocket of probes and lifecycle
    handlers."""
    if version < (1, 34):
        return True
    for container in _containers(spec):
        handlers = [container.get(p) for p in ("livenessProbe", "readinessProbe", "startupProbe")]
        lifecycle = container.get("lifecycle") or {}
        handlers += [lifecycle.get("postStart"), lifecycle.get("preStop")]
        for handler in handlers:
            for action in ("httpGet", "tcpSocket"):
                if ((handler or {}).get(action) or {}).get("host"):
                    return False
    return True


# -- restricted --------------------------------------------------------------------------------------------

RESTRICTED_VOLUME_SOURCES = {
    "configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "image", "persistentVolumeClaim", "projected",
    "secret",
}  # fmt: skip


def restricted_volumes(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_restrictedVolumes.go: only configMap, csi, downwardAPI, emptyDir, ephemeral, image,
    persistentVolumeClaim, projected, secret volumes."""
    return all(set(volume) - {"name"} <= RESTRICTED_VOLUME_SOURCES for volume in spec.get("volumes") or [])


def allow_privilege_escalation(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_allowPrivilegeEscalation.go: allowPrivilegeEscalation false (Windows pods exempt from 1.25)."""
    if version >= (1, 25) and _windows(spec):
        return True
    return all(_sc(c).get("allowPrivilegeEscalation") is False for c in _containers(spec))


def run_as_non_root(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_runAsNonRoot.go: runAsNonRoot true at pod level or on every container, never false; from 1.35
    anything in a user namespace."""
    if version >= (1, 35) and _user_namespace(spec):
        return True
    pod = _pod_sc(spec).get("runAsNonRoot")
    if pod is False:
        return False
    for container in _containers(spec):
        value = _sc(container).get("runAsNonRoot")
        if value is False or (value is None and pod is not True):
            return False
    return True


def run_as_user(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_runAsUser.go (1.23+): runAsUser never 0; from 1.35 anything in a user namespace."""
    if version >= (1, 35) and _user_namespace(spec):
        return True
    setters = [_pod_sc(spec), *(_sc(c) for c in _containers(spec))]
    return not any(s.get("runAsUser") == 0 for s in setters)


def seccomp_profile_restricted(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_seccompProfile_restricted.go: RuntimeDefault or Localhost at pod level or on every container
    (Windows pods exempt from 1.25)."""
    if version >= (1, 25) and _windows(spec):
        return True
    pod = _pod_sc(spec).get("seccompProfile")
    if pod is not None and not _seccomp_ok(pod):
        return False
    for container in _containers(spec):
        own = _sc(container).get("seccompProfile")
        if (own is not None and not _seccomp_ok(own)) or (own is None and pod is None):
            return False
    return True


def capabilities_restricted(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_capabilities_restricted.go: drop includes ALL, add only NET_BIND_SERVICE (Windows pods exempt
    from 1.25)."""
    if version >= (1, 25) and _windows(spec):
        return True
    for container in _containers(spec):
        capabilities = _sc(container).get("capabilities") or {}
        if "ALL" not in (capabilities.get("drop") or []):
            return False
        if set(capabilities.get("add") or []) - {"NET_BIND_SERVICE"}:
            return False
    return True


def proc_mount_restricted(spec: Spec, meta: Meta, version: tuple[int, int]) -> bool:
    """check_procMount_restricted.go (1.35+): procMount Default or undefined, user namespace or not."""
    return _proc_mount_default(spec)


@dataclass(frozen=True)
class Check:
    id: str  # the check's ID in pod-security-admission
    level: str
    run: Callable[[Spec, Meta, tuple[int, int]], bool]
    overrides: tuple[str, ...] = ()
    since: tuple[int, int] = (1, 0)


CHECKS = (
    Check("hostNamespaces", "baseline", host_namespaces),
    Check("privileged", "baseline", privileged),
    Check("capabilities_baseline", "baseline", capabilities_baseline),
    Check("hostPathVolumes", "baseline", host_path_volumes),
    Check("hostPorts", "baseline", host_ports),
    Check("appArmorProfile", "baseline", app_armor_profile),
    Check("seLinuxOptions", "baseline", selinux_options),
    Check("procMount", "baseline", proc_mount),
    Check("seccompProfile_baseline", "baseline", seccomp_profile_baseline),
    Check("sysctls", "baseline", sysctls),
    Check("windowsHostProcess", "baseline", windows_host_process),
    Check("hostProbesAndHostLifecycle", "baseline", host_probes_and_host_lifecycle, since=(1, 34)),
    Check("restrictedVolumes", "restricted", restricted_volumes, overrides=("hostPathVolumes",)),
    Check("allowPrivilegeEscalation", "restricted", allow_privilege_escalation),
    Check("runAsNonRoot", "restricted", run_as_non_root),
    Check("runAsUser", "restricted", run_as_user, since=(1, 23)),
    Check(
        "seccompProfile_restricted", "restricted", seccomp_profile_restricted, overrides=("seccompProfile_baseline",)
    ),
    Check(
        "capabilities_restricted",
        "restricted",
        capabilities_restricted,
        overrides=("capabilities_baseline",),
        since=(1, 22),
    ),  # fmt: skip
    Check("procMount_restricted", "restricted", proc_mount_restricted, overrides=("procMount",), since=(1, 35)),
)


def checks_of(level: str, version: tuple[int, int]) -> list[Check]:
    """The checks a namespace enforcing `level` at `version` runs (policy/registry.go: a level's checks are
    those of it and the levels below; a check's OverrideCheckIDs replace those checks)."""
    wanted = LEVELS[1 : LEVELS.index(level) + 1]
    active = [c for c in CHECKS if c.level in wanted and version >= c.since]
    overridden = {o for c in active for o in c.overrides}
    return [c for c in active if c.id not in overridden]


def violations(spec: Spec, meta: Meta, level: str, version: tuple[int, int]) -> set[str]:
    """The ids of the checks a pod (its spec and metadata) fails under `level` at Kubernetes `version`."""
    return {check.id for check in checks_of(level, version) if not check.run(spec, meta, version)}
