//! The terminal `login` prompts on: whether stdin is one, and its echo off
//! while an API key is typed, as `ssh-keygen` and `sudo` do.

use std::io::{self, Read, Write};

/// Standard input, known to be a terminal.
#[derive(Debug)]
pub struct Terminal(());

/// Standard input, when it is a terminal (not a pipe or a file).
pub fn stdin() -> Option<Terminal> {
    #[cfg(unix)]
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
        return Some(Terminal(()));
    }
    None
}

impl Terminal {
    /// Writes `prompt` to stderr and reads one line from `input` (the
    /// terminal) with its echo off; the line typed never shows. The echo
    /// comes back when the line is read, or the read fails.
    pub fn read_hidden(
        &self,
        prompt: &str,
        input: &mut dyn Read,
        max: usize,
    ) -> io::Result<Vec<u8>> {
        let mut stderr = io::stderr().lock();
        stderr.write_all(prompt.as_bytes())?;
        stderr.flush()?;
        let line = {
            let _echo = EchoOff::new()?;
            read_line(input, max)
        };
        // The Enter that ended the line was not echoed either.
        stderr.write_all(b"\n")?;
        line
    }
}

/// Reads up to the first `\n` (not included) or the end of `input`, one
/// byte at a time so nothing after the line is taken; more than `max` bytes
/// is an error.
pub fn read_line(input: &mut dyn Read, max: usize) -> io::Result<Vec<u8>> {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match input.read(&mut byte) {
            Ok(0) => break,
            Ok(_) if byte[0] == b'\n' => break,
            Ok(_) if line.len() >= max => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a line longer than {max} bytes"),
                ))
            }
            Ok(_) => line.push(byte[0]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(line)
}

/// The terminal's echo turned off until this is dropped.
struct EchoOff {
    #[cfg(unix)]
    saved: libc::termios,
}

impl EchoOff {
    #[cfg(unix)]
    fn new() -> io::Result<EchoOff> {
        // SAFETY: a zeroed termios is a valid value for tcgetattr to fill.
        let mut saved: libc::termios = unsafe { std::mem::zeroed() };
        // SAFETY: fd 0 and a valid pointer to a termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut saved) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK);
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(EchoOff { saved })
    }

    #[cfg(not(unix))]
    fn new() -> io::Result<EchoOff> {
        Ok(EchoOff {})
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores what tcgetattr read.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_is_read_up_to_its_newline_and_no_further() {
        let mut input: &[u8] = b"key-1\nrest";
        assert_eq!(read_line(&mut input, 64).unwrap(), b"key-1");
        assert_eq!(input, b"rest");
        let mut input: &[u8] = b"no newline";
        assert_eq!(read_line(&mut input, 64).unwrap(), b"no newline");
        let mut input: &[u8] = b"";
        assert_eq!(read_line(&mut input, 64).unwrap(), b"");
        let mut input: &[u8] = b"12345";
        assert!(read_line(&mut input, 4).is_err());
    }
}
