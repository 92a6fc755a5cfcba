//! AFL++ target: [`apivip::testkit::fuzz::packet`] on each input.
fn main() {
    afl::fuzz!(|data: &[u8]| {
        apivip::testkit::fuzz::packet(data);
    });
}
