//! AFL++ target: [`apivip::testkit::fuzz::config`] on each input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        apivip::testkit::fuzz::config(data);
    });
}
