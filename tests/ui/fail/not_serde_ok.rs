struct Model;

#[fleche::memoize]
fn fit(steps: u32) -> Result<Model, String> {
    let _ = steps;
    Ok(Model)
}

fn main() {}
