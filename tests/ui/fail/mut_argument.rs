#[fleche::memoize]
fn push(v: &mut Vec<u8>) -> usize {
    v.push(1);
    v.len()
}

fn main() {}
