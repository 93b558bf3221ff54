//! `println!` and `eprintln!` for the benchmarks that never panic. With stdout or
//! stderr closed (`| head`) those panic; the unwinding then reaches a `Drop` that prints
//! too, the second panic aborts, and the sandboxes being measured are never removed.

macro_rules! say {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}

#[allow(unused_macros)] // not every benchmark reports on stderr
macro_rules! say_err {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
