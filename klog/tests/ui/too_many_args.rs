// At most 16 arguments: the error points at the 17th.
use klog::klog;

fn main() {
    klog!(
        "{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}",
        0u8, 1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8, 13u8, 14u8, 15u8, 16u8
    );
    let x = 1u8;
    klog!("{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{}{x}", 0u8, 1u8, 2u8, 3u8, 4u8, 5u8, 6u8, 7u8, 8u8, 9u8, 10u8, 11u8, 12u8, 13u8, 14u8, 15u8);
}
