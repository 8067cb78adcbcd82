#[derive(fleche::Key)]
union Bits {
    f: f32,
    u: u32,
}

fn main() {}
