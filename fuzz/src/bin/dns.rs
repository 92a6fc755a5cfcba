//! AFL++ target: `apivip::testkit::fuzz::dns` (DNS replies and votes).
fn main() {
    afl::fuzz!(|data: &[u8]| apivip::testkit::fuzz::dns(data));
}
