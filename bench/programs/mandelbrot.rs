//! mandelbrot: escape-time count over an n×n grid, 50 iterations at most. Size: n (default 1000).

fn mandelbrot(n: i64) -> i64 {
    let mut count = 0;
    for y in 0..n {
        let ci = 2.0 * y as f64 / n as f64 - 1.0;
        for x in 0..n {
            let cr = 2.0 * x as f64 / n as f64 - 1.5;
            let (mut zr, mut zi) = (0.0f64, 0.0f64);
            let mut i = 0;
            while i < 50 {
                let tr = zr * zr - zi * zi + cr;
                zi = 2.0 * zr * zi + ci;
                zr = tr;
                if zr * zr + zi * zi > 4.0 {
                    break;
                }
                i += 1;
            }
            if i == 50 {
                count += 1;
            }
        }
    }
    count
}

fn main() {
    let n: i64 = std::env::args()
        .nth(1)
        .map_or(1000, |s| s.parse().expect("the size must be an integer"));
    println!("{}", mandelbrot(n));
}
