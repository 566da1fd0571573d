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

/// The terminal's echo turned off until this is dropped, or until a signal
/// ends the process while it is off (Ctrl-C at the prompt): the handler
/// puts the terminal back before the signal does its default, as
/// `ssh-keygen`'s prompt does, so a shell is never left without echo.
struct EchoOff {
    #[cfg(unix)]
    saved: libc::termios,
    #[cfg(unix)]
    handlers: [libc::sighandler_t; SIGNALS.len()],
}

/// The signals whose default ends the process.
#[cfg(unix)]
const SIGNALS: [libc::c_int; 4] = [libc::SIGINT, libc::SIGTERM, libc::SIGHUP, libc::SIGQUIT];

/// What the signal handler restores; written before the handler is
/// installed, read only by it and by `Drop` (the helper has one thread).
#[cfg(unix)]
struct Saved(std::cell::UnsafeCell<std::mem::MaybeUninit<libc::termios>>);

// SAFETY: written once before ARMED is set, only read afterwards.
#[cfg(unix)]
unsafe impl Sync for Saved {}

#[cfg(unix)]
static SAVED: Saved = Saved(std::cell::UnsafeCell::new(std::mem::MaybeUninit::uninit()));
#[cfg(unix)]
static ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Puts the terminal back, then lets the signal do its default.
/// Async-signal-safe: `tcsetattr`, `signal` and `raise` only.
#[cfg(unix)]
extern "C" fn restore_and_die(signal: libc::c_int) {
    if ARMED.load(std::sync::atomic::Ordering::SeqCst) {
        // SAFETY: SAVED was written before ARMED was set.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, (*SAVED.0.get()).as_ptr());
        }
    }
    // SAFETY: the default disposition, then the signal again.
    unsafe {
        libc::signal(signal, libc::SIG_DFL);
        libc::raise(signal);
    }
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
        // SAFETY: no handler reads SAVED until ARMED is set below.
        unsafe { (*SAVED.0.get()).write(saved) };
        ARMED.store(true, std::sync::atomic::Ordering::SeqCst);
        let handler = restore_and_die as extern "C" fn(libc::c_int) as libc::sighandler_t;
        // SAFETY: installing a handler that is async-signal-safe.
        let handlers = SIGNALS.map(|signal| unsafe { libc::signal(signal, handler) });
        let echo_off = EchoOff { saved, handlers };
        let mut quiet = saved;
        quiet.c_lflag &= !(libc::ECHO | libc::ECHOE | libc::ECHOK | libc::ECHONL);
        // SAFETY: as above.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &quiet) } != 0 {
            return Err(io::Error::last_os_error()); // Drop puts the handlers back
        }
        Ok(echo_off)
    }

    #[cfg(not(unix))]
    fn new() -> io::Result<EchoOff> {
        Ok(EchoOff {})
    }
}

impl Drop for EchoOff {
    fn drop(&mut self) {
        #[cfg(unix)]
        // SAFETY: restores what tcgetattr read, then the handlers there were.
        unsafe {
            libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.saved);
            ARMED.store(false, std::sync::atomic::Ordering::SeqCst);
            for (signal, handler) in SIGNALS.iter().zip(self.handlers) {
                libc::signal(*signal, handler);
            }
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
