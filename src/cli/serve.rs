//! `nixmox serve`: loads and checks the manifest (secrets included, as
//! every command does), opens the store, and serves until interrupted.

use super::common::{self, CliError};
use super::{Cli, ServeArgs};
use crate::serve::{App, Options};
use std::process::ExitCode;

pub fn run(cli: &Cli, args: &ServeArgs) -> Result<ExitCode, CliError> {
    let v = common::load(cli)?;
    let store = common::open_store(cli, &v.manifest)?;
    let manifest_path = std::path::absolute(&v.manifest.source)
        .map_err(|e| CliError::Message(format!("serve: the manifest's path: {e}")))?;
    let app = App::new(Options {
        manifest_path,
        state_spec: cli.state.clone(),
        store,
        listen: args.listen,
        token_file: args.token_file.clone(),
        status_every: args.status_every,
        manifest: v.manifest,
    })
    .map_err(CliError::Message)?;
    crate::serve::run(app).map_err(CliError::Message)?;
    Ok(ExitCode::SUCCESS)
}
