#!/usr/bin/env python3
"""The naive deploy loop people write today, kept as the baseline that
benches/noop_apply.rs measures nixmox against.

For every Terraform phase in order: init, select the workspace, plan and
apply (always). For every host in order: build its system, copy it, set the
profile and switch (always). Then every health check, one after another.

Usage: naive_apply.py MANIFEST.nix STATE_DIR LAB_DIR
(STATE_DIR holds nixmox's Terraform working directories, which this loop
reuses so both work on the same state; LAB_DIR has the lab's SSH key.)
"""
import json
import os
import socket
import subprocess
import sys
import urllib.request

manifest_path, state_dir, lab_dir = sys.argv[1:4]
base = os.path.dirname(os.path.abspath(manifest_path))
m = json.loads(subprocess.check_output(["nix-instantiate", "--eval", "--strict", "--json", manifest_path]))
services = {**m.get("core_services", {}), **m.get("services", {})}
enabled = {n: s for n, s in services.items() if s.get("enable", True)}
order = ["dns", "postgresql", "caddy", "authentik"] + sorted(n for n in m.get("services", {}) if n in enabled)

env = dict(os.environ, CHECKPOINT_DISABLE="1", TF_IN_AUTOMATION="1", TF_INPUT="0",
           NIX_CONFIG="experimental-features = nix-command flakes\nsubstituters =\nsandbox = false")
env.pop("TF_CLI_CONFIG_FILE", None)
tf = os.environ.get("NIXMOX_TERRAFORM", "terraform")

def run(*args, env=env, **kw):
    r = subprocess.run(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, **kw)
    if r.returncode != 0:
        sys.exit(f"naive loop: {' '.join(args[:3])} failed (exit {r.returncode}):\n{r.stderr.decode(errors='replace')}")

# Terraform: every phase, plan and apply, every time.
def host(n, s):
    r = s.get("resources", {})
    return {"vmid": s.get("vmid"), "ip": s["ip"], "hostname": s["hostname"],
            "kind": "core" if n in m.get("core_services", {}) else "application",
            "resources": {k: r.get(k) for k in ("cores", "memory", "disk_gb")},
            "onboot": s.get("onboot", True), "start": s.get("start", True)}
hosts = {n: host(n, s) for n, s in enabled.items()}
oidc = {}
for n, s in enabled.items():
    auth = s.get("interface", {}).get("auth")
    if auth and auth.get("type") == "oidc":
        o = auth.get("oidc", {})
        oidc[o.get("client_id", n + "-oidc")] = {
            "service": n, "client_type": o.get("client_type", "confidential"),
            "redirect_uris": o.get("redirect_uris", []), "scopes": o.get("scopes", ["openid", "email", "profile"]),
            "username_claim": "preferred_username", "groups_claim": "groups"}
net = m.get("network", {})
network = {"domain": net.get("domain"), "dns_server": net.get("dns_server"), "gateway": net.get("gateway"),
           "network_cidr": net.get("network_cidr"), "vlan_tag": net.get("vlan_tag"), "ssh_keys": net.get("ssh_keys", {}),
           "ldap_base_dn": net.get("outposts", {}).get("ldap", {}).get("base_dn")}
# The auth-core variables the manifest takes from its SOPS file, decrypted
# the way such scripts do it: one `sops --decrypt --extract` per value.
# (Passed as TF_VAR_ environment values, never written to a file.)
auth_vars = {"oidc_apps": oidc, "hosts": hosts, "network": network}
auth_secret_env = {}
secrets = m.get("secrets", {})
for name, ref in m.get("terraform", {}).get("auth_core", {}).get("variables", {}).items():
    if isinstance(ref, dict) and "sops" in ref:
        keys = ref["sops"] if isinstance(ref["sops"], list) else ref["sops"].split(".")
        path = os.path.join(base, ref.get("file", secrets.get("sops_file", "")))
        sops_env = dict(env)
        if "age_key_file" in secrets and "SOPS_AGE_KEY_FILE" not in sops_env:
            sops_env["SOPS_AGE_KEY_FILE"] = os.path.join(base, secrets["age_key_file"])
        auth_secret_env["TF_VAR_" + name] = subprocess.check_output(
            [os.environ.get("NIXMOX_SOPS", "sops"), "--decrypt", "--extract",
             "".join(json.dumps([k]) for k in keys), path], env=sops_env).decode()
    else:
        auth_vars[name] = ref
for ws, var in (("infra", {"hosts": hosts}), ("auth-core", auth_vars)):
    # nixmox's home for the workspace: the root module's copy it runs in
    # (named in .nixmox-run-dir), Terraform's data directory and the state.
    home = os.path.join(state_dir, "terraform", ws)
    with open(os.path.join(home, ".nixmox-run-dir")) as f:
        d = f.read().strip()
    tf_env = dict(env, TF_DATA_DIR=os.path.join(home, ".terraform"))
    if ws == "auth-core":
        tf_env.update(auth_secret_env)
    with open(os.path.join(d, "naive.auto.tfvars.json"), "w") as f:
        json.dump(var, f)
    for args in (("init", "-input=false"), ("workspace", "select", "-or-create=true", ws),
                 ("plan", "-input=false", "-out=naive.tfplan"), ("apply", "-input=false", "naive.tfplan")):
        run(tf, *args, env=tf_env, cwd=d)
    os.remove(os.path.join(d, "naive.tfplan"))
    os.remove(os.path.join(d, "naive.auto.tfvars.json"))

# NixOS: every host, build, copy, set, switch, every time.
ssh = ["ssh", "-i", os.path.join(lab_dir, "ssh/id_ed25519"), "-o", "BatchMode=yes",
       "-o", "UserKnownHostsFile=" + os.path.join(lab_dir, "ssh/known_hosts"), "-o", "StrictHostKeyChecking=accept-new"]
for n in order:
    out = subprocess.check_output(["nix", "build", "--json", "--no-link",
                                   f"{base}#nixosConfigurations.{n}.config.system.build.toplevel"], env=env)
    path = json.loads(out)[0]["outputs"]["out"]
    ip = enabled[n]["ip"]
    subprocess.run(["nix", "copy", "--to", f"ssh://root@{ip}", path], check=True, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL, env={**env, "NIX_SSHOPTS": " ".join(ssh[1:])})
    run(*ssh, f"root@{ip}", f"nix-env -p /nix/var/nix/profiles/system --set {path} && {path}/bin/switch-to-configuration switch")

# Health: every check, one after another.
for n in order:
    h = enabled[n].get("interface", {}).get("health", {})
    probe = h.get("readiness") or h.get("startup")
    if not probe:
        continue
    if probe.startswith("http"):
        urllib.request.urlopen(probe, timeout=10).read()
    elif probe.startswith("tcp://"):
        host, port = probe[6:].rsplit(":", 1)
        socket.create_connection((host, int(port)), timeout=10).close()
    else:
        run(*ssh, f"root@{enabled[n]['ip']}", probe)
