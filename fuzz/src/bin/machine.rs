//! AFL++ target: [`apivip::testkit::fuzz::machine`] on each input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        apivip::testkit::fuzz::machine(data);
    });
}
