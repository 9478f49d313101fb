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
}
