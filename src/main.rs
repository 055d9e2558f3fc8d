//! The `regsweep` command line: a thin layer over the library.

mod cli;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    let format = args.log_format;
    cli::init_logging(format, args.command.default_log_level());
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("tokio runtime");
    match runtime.block_on(cli::run(args.command)) {
        Ok(code) => code,
        Err(failure) => {
            match format {
                // One JSON object on stderr, like the log lines before it.
                cli::LogFormat::Json => eprintln!(
                    "{}",
                    serde_json::json!({
                        "timestamp": chrono::Utc::now().to_rfc3339(),
                        "level": "ERROR",
                        "message": failure.message,
                        "exit_code": failure.exit_code,
                    })
                ),
                cli::LogFormat::Text => eprintln!("error: {}", failure.message),
            }
            ExitCode::from(failure.exit_code)
        }
    }
}
