//! Shared by the test binaries (each includes it with `#[path]`).

/// A valid national ID number (GB 11643-1999: Beijing Xicheng, born on `birth`
/// `YYYYMMDD`, checksum digit) distinct for each `seq` below 1000.
pub fn national_id(birth: &str, seq: u32) -> String {
    const WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let body = format!("110105{birth}{:03}", seq % 1000);
    let sum: u32 = body
        .bytes()
        .zip(WEIGHTS)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    let check = b"10X98765432"[(sum % 11) as usize] as char;
    format!("{body}{check}")
}
