// The emulation's test helpers (emu_check.h).
#include "emu_check.h"

#include <cmath>
#include <cstdio>
#include <cstring>

int emu_failures, emu_checks;

namespace {
uint64_t rng_state = 20240607;
}

uint64_t emu_random()
{
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return rng_state >> 11;
}

static float normal()
{
    double u = ((double)emu_random() + 0.5) / 9007199254740992.0, v = ((double)emu_random() + 0.5) / 9007199254740992.0;
    return (float)(sqrt(-2 * log(u)) * cos(6.283185307179586 * v));
}

twin::twin(std::initializer_list<int64_t> dims, albef_dtype dt) : dtype(dt), shape(dims)
{
    size_t words = (bytes() + 3) / 4;
    side[0].assign(words ? words : 1, 0);
    side[1].assign(words ? words : 1, 0);
}

int64_t twin::numel() const
{
    int64_t n = 1;
    for (int64_t d : shape)
        n *= d;
    return n;
}

size_t twin::bytes() const { return (size_t)numel() * dtype_size(dtype); }

tensor twin::on(int s) { return tensor_make(side[s].data(), dtype, (int)shape.size(), shape.data()); }

void fill_randn(twin &t, float std)
{
    for (int64_t i = 0; i < t.numel(); i++) {
        float v = std * normal();
        t.f(0)[i] = t.f(1)[i] = v != 0.0f ? v : std;
    }
}

twin randn(std::initializer_list<int64_t> dims, float std)
{
    twin t(dims);
    fill_randn(t, std);
    return t;
}

void poison(twin &t)
{
    memset(t.side[0].data(), 0, t.side[0].size() * 4);
    memset(t.side[1].data(), 0xff, t.side[1].size() * 4);
}

twin poisoned(std::initializer_list<int64_t> dims, albef_dtype dt)
{
    twin t(dims, dt);
    poison(t);
    return t;
}

void assign(twin &t, const twin &u)
{
    t = u;
    t.side[1] = u.side[0];
}

twin ints(std::initializer_list<int64_t> dims, const std::vector<int32_t> &values)
{
    twin t(dims, DTYPE_I32);
    for (int64_t i = 0; i < t.numel(); i++)
        t.i(0)[i] = t.i(1)[i] = values[(size_t)i];
    return t;
}

void expect(bool ok, const std::string &what)
{
    printf("%s %s\n", ok ? "ok  " : "FAIL", what.c_str());
    emu_checks++;
    emu_failures += !ok;
}

void expect_close(const std::string &what, twin &t, double tol)
{
    const float *got = t.f(1), *ref = t.f(0);
    size_t n = (size_t)t.numel(), nans = 0, first_nan = 0, at = 0;
    double d2 = 0, r2 = 0, max_abs = 0;
    for (size_t i = 0; i < n; i++) {
        if (std::isnan(got[i]) && !std::isnan(ref[i])) {
            if (!nans++)
                first_nan = i;
            continue;
        }
        double d = (double)got[i] - ref[i];
        d2 += d * d;
        r2 += (double)ref[i] * ref[i];
        if (fabs(d) > max_abs)
            max_abs = fabs(d), at = i;
    }
    double rel = r2 > 0 ? sqrt(d2 / r2) : sqrt(d2);
    char line[512];
    int len = snprintf(line, sizeof line, "%-58s %8zu values, |d|/|ref| %.2e", what.c_str(), n, rel);
    bool ok = nans == 0 && rel <= tol;
    if (!ok && len > 0 && (size_t)len < sizeof line) {
        if (nans)
            snprintf(line + len, sizeof line - len, "; %zu NaN (unwritten?), first [%zu], expected %.9g", nans,
                     first_nan, ref[first_nan]);
        else
            snprintf(line + len, sizeof line - len, " > %.0e; max |d| %.3g at [%zu]: %.9g, CPU %.9g", tol, max_abs, at,
                     got[at], ref[at]);
    }
    expect(ok, line);
}

void expect_equal(const std::string &what, twin &t)
{
    size_t n = (size_t)t.numel(), size = dtype_size(t.dtype), differ = 0, first = 0;
    const unsigned char *got = reinterpret_cast<const unsigned char *>(t.side[1].data()),
                        *ref = reinterpret_cast<const unsigned char *>(t.side[0].data());
    for (size_t i = 0; i < n; i++)
        if (memcmp(got + i * size, ref + i * size, size) && !differ++)
            first = i;
    char line[512];
    if (differ) {
        uint32_t g = 0, r = 0;
        memcpy(&g, got + first * size, size), memcpy(&r, ref + first * size, size);
        snprintf(line, sizeof line, "%-58s %8zu values, %zu differ, first [%zu]: 0x%08x, CPU 0x%08x", what.c_str(), n,
                 differ, first, g, r);
    } else
        snprintf(line, sizeof line, "%-58s %8zu values bitwise equal to the CPU", what.c_str(), n);
    expect(!differ, line);
}

void expect_rerun(const std::string &what, twin &t, const std::vector<uint32_t> &ref)
{
    size_t differ = 0, first = 0;
    for (size_t i = 0; i < ref.size(); i++)
        if (t.side[1][i] != ref[i] && !differ++)
            first = i;
    char line[512];
    snprintf(line, sizeof line, "%-58s %8zu words, %s", what.c_str(), ref.size(),
             differ ? "a rerun DIFFERS" : "a rerun bitwise equal");
    if (differ)
        snprintf(line + strlen(line), sizeof line - strlen(line), " at %zu, first [%zu]", differ, first);
    expect(!differ, line);
}

void expect_same_mask(const std::string &what, twin &t)
{
    size_t n = (size_t)t.numel(), differ = 0, dropped = 0;
    for (size_t i = 0; i < n; i++) {
        dropped += t.f(0)[i] == 0.0f;
        differ += (t.f(1)[i] == 0.0f) != (t.f(0)[i] == 0.0f);
    }
    char line[512];
    snprintf(line, sizeof line, "%-58s %8zu values, %zu dropped, masks %s", what.c_str(), n, dropped,
             differ ? "DIFFER" : "identical");
    expect(!differ && (dropped > 0 || n < 100), line);
}
