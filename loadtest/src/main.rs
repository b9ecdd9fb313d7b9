//! dinq-loadtest: the load generator (skeleton; scenarios arrive with the load-test issue).

fn main() {
    eprintln!("dinq-loadtest: no scenarios yet");
    std::process::exit(2);
}
