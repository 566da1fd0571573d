//! The floor for a Rust credential helper, for bench/run.sh: read the request
//! on stdin, read one small JSON file (the helper's token cache) and print it.
//! Built by bench/run.sh with the flags install.sh gives the helper, so the
//! difference between the two is the helper's own work.

use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut request = Vec::new();
    let Some(path) = std::env::args_os().nth(1) else {
        return ExitCode::from(2);
    };
    let answered = std::io::stdin()
        .read_to_end(&mut request)
        .and_then(|_| std::fs::read(path))
        .and_then(|file| std::io::stdout().lock().write_all(&file));
    match answered {
        Ok(()) => ExitCode::SUCCESS,
        Err(_) => ExitCode::FAILURE,
    }
}
