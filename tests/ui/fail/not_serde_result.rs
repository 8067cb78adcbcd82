struct Model;

#[fleche::memoize]
fn fit(steps: u32) -> Model {
    let _ = steps;
    Model
}

fn main() {}
