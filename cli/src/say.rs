//! Messages for the operator as upstream gives them: failures in red and successes in green
//! on stderr, coloured only on a terminal.

use std::io::IsTerminal;

/// A failure message on stderr, red on a terminal.
pub fn red(message: &str) {
    colored(message, 31);
}

/// A success message on stderr, green on a terminal.
pub fn green(message: &str) {
    colored(message, 32);
}

fn colored(message: &str, color: u8) {
    match std::io::stderr().is_terminal() {
        true => eprintln!("\x1b[{color}m{message}\x1b[0m"),
        false => eprintln!("{message}"),
    }
}
