#[derive(fleche::Key)]
struct Spec {
    #[key(skp)]
    n: u64,
}

fn main() {}
