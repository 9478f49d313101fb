# How many generated application hosts the lab adds to its own (0 to 32),
# and what each of them has. `apps = 0` is the seven-host lab; the scale
# benchmark (benches/scale.rs) writes this file in its copy of the lab.
{
  apps = 0;
  # Each generated application gets its own database, a proxy route and a
  # confidential OIDC client, like wiki.
  db = true;
  proxy = true;
  oidc = true;
  # A version per generated application, to change one of them:
  # versions = { app07 = "1.1"; };
  versions = { };
  # A stand-in for nixpkgs's evaluation cost. The lab's systems use no
  # nixpkgs and evaluate in milliseconds; a real NixOS system takes seconds
  # and a GiB, which is what a run on a real stack spends most of its time
  # on. Each system's evaluation does this many thousand additions on top
  # (about 0.15 s per 1000 on the 2-core lab machine, and memory with it).
  # benches/evaluation.rs sets it; 0 leaves the systems as they are.
  evalWork = 0;
}
