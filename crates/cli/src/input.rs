//! Reading PINs and document input: from the terminal without echo, or line by line from
//! standard input for scripts.

use std::io::{BufRead, IsTerminal, Read};

use anyhow::{Context as _, Result, bail};
use vault::Pin;

/// Where secrets come from.
pub struct Input {
    from_stdin: bool,
}

impl Input {
    pub fn new(from_stdin: bool) -> Input {
        Input { from_stdin }
    }

    /// Whether secrets come from standard input.
    pub fn reads_stdin(&self) -> bool {
        self.from_stdin
    }

    /// Reads one PIN: the next line of stdin, or a hidden prompt on the terminal.
    pub fn pin(&mut self, prompt: &str) -> Result<Pin> {
        if self.from_stdin {
            let mut line = String::new();
            let n = std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading a PIN from standard input")?;
            if n == 0 {
                bail!(
                    "standard input ended before a PIN was given ({})",
                    prompt.trim_end_matches(": ")
                );
            }
            return Ok(Pin::new(line));
        }
        if !std::io::stdin().is_terminal() {
            bail!(
                "there is no terminal to read the PIN from; pass --pin-stdin and give the PIN on standard input"
            );
        }
        let s = rpassword::prompt_password(prompt).context("reading the PIN from the terminal")?;
        Ok(Pin::new(s))
    }

    /// Reads a new PIN; on a terminal it is asked twice.
    pub fn new_pin(&mut self, prompt: &str) -> Result<Pin> {
        let pin = self.pin(prompt)?;
        if !self.from_stdin {
            let again = self.pin("Repeat the new PIN: ")?;
            if !pin.ct_eq(&again) {
                bail!("the two PINs do not match");
            }
        }
        Ok(pin)
    }

    /// Reads everything left on standard input (after any PIN lines).
    pub fn rest_of_stdin(&mut self) -> Result<String> {
        let mut s = String::new();
        std::io::stdin()
            .lock()
            .read_to_string(&mut s)
            .context("reading standard input")?;
        Ok(s)
    }
}
