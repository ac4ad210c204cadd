//! `registry validate [-config-format=json|hcl] [-quiet] PATH...`: Consul's `consul validate`.
//! Reads the files and directories as `agent -config-file/-config-dir` would, merges and
//! validates them exactly as the agent does at start, and reports the result. The data
//! directory, usually given with `-data-dir` on the agent's command line, defaults to the
//! system's temporary directory when no file sets it.

use crate::config::{self, source, Format, PartialConfig, SystemEnvironment};
use clap::Args;
use std::path::PathBuf;

/// `validate` flags and paths.
#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Read every file as this format, whatever its extension.
    #[arg(long = "config-format", value_name = "json|hcl", value_parser = ["json", "hcl"])]
    pub config_format: Option<String>,
    /// Print nothing when the configuration is valid.
    #[arg(long)]
    pub quiet: bool,
    /// Configuration files and directories, merged in order.
    #[arg(required = true, value_name = "FILE_OR_DIRECTORY")]
    pub paths: Vec<PathBuf>,
}

/// Runs `validate`; returns the exit code.
pub fn run(args: &ValidateArgs) -> i32 {
    match check(args) {
        Ok(warnings) => {
            if !args.quiet {
                for w in warnings {
                    println!("Warning: {w}");
                }
                println!("Configuration is valid!");
            }
            0
        }
        Err(e) => {
            eprintln!("Config validation failed: {e}");
            1
        }
    }
}

fn check(args: &ValidateArgs) -> Result<Vec<String>, config::ConfigError> {
    let format = args.config_format.as_deref().and_then(Format::parse);
    let (files, paths) = source::load_paths(&args.paths, format)?;
    let mut sources = vec![PartialConfig {
        data_dir: Some(std::env::temp_dir()),
        ..PartialConfig::default()
    }];
    sources.extend(files);
    let built = config::build(false, sources, paths, &SystemEnvironment)?;
    Ok(built.warnings)
}
