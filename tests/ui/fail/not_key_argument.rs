struct Grid;

#[fleche::memoize]
fn solve(grid: &Grid, steps: u32) -> u64 {
    let _ = grid;
    u64::from(steps)
}

fn main() {}
