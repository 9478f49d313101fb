# The lab's systems: one `nixosConfigurations.<name>` per enabled service of
# ./manifest.nix. No inputs and no nixpkgs: each toplevel is a small plain
# derivation (see ./systems) whose bin/switch-to-configuration starts that lab
# host's daemons (Debian/npm binaries) inside its network and mount namespace.
#
# Build one:  nix build --json --no-link \
#   "path:$PWD/examples/lab#nixosConfigurations.wiki.config.system.build.toplevel"
{
  description = "NixMox lab systems, generated from manifest.nix";

  outputs = { self }: {
    nixosConfigurations = import ./systems {
      manifest = import ./manifest.nix;
      # The node/shell files the systems run. They live inside this flake
      # (./runtime, also reachable as `lab/` at the repo root) because a
      # `path:` flake can only reference files under its own directory.
      runtime = ./runtime;
      # A stand-in for nixpkgs's evaluation cost (./scale.nix); 0 here.
      evalWork = (import ./scale.nix).evalWork or 0;
    };
  };
}
