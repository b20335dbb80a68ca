/* dr_bytes.h - bounds-checked little-endian encoding helpers for the
 * fixed binary records driftrec stores (users, items, globals).
 *
 * A writer appends into a caller-sized buffer; a reader consumes from a
 * borrowed one and turns sticky-failed on the first short read, so a
 * decoder checks `ok` once at the end instead of after every field. */
#ifndef DR_BYTES_H
#define DR_BYTES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

typedef struct dr_writer {
    uint8_t *p;
    size_t len, cap;
    bool ok;
} dr_writer_t;

typedef struct dr_reader {
    const uint8_t *p;
    size_t len, pos;
    bool ok;
} dr_reader_t;

/* n may be 0 with src NULL (an absent array): memcpy must not see that. */
static inline void dr_put_bytes(dr_writer_t *w, const void *src, size_t n) {
    if (!w->ok || w->cap - w->len < n) { w->ok = false; return; }
    if (n == 0) return;
    memcpy(w->p + w->len, src, n);
    w->len += n;
}
/* Records are stored in host order, which must be little-endian: refuse to
 * build elsewhere rather than write a layout other hosts would misread. */
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "driftrec records are little-endian");
static inline void dr_put_u8(dr_writer_t *w, uint8_t v) { dr_put_bytes(w, &v, 1); }
static inline void dr_put_u16(dr_writer_t *w, uint16_t v) { dr_put_bytes(w, &v, 2); }
static inline void dr_put_u32(dr_writer_t *w, uint32_t v) { dr_put_bytes(w, &v, 4); }
static inline void dr_put_u64(dr_writer_t *w, uint64_t v) { dr_put_bytes(w, &v, 8); }
static inline void dr_put_i64(dr_writer_t *w, int64_t v) { dr_put_bytes(w, &v, 8); }
static inline void dr_put_f32(dr_writer_t *w, float v) { dr_put_bytes(w, &v, 4); }
static inline void dr_put_f64(dr_writer_t *w, double v) { dr_put_bytes(w, &v, 8); }

static inline void dr_get_bytes(dr_reader_t *r, void *dst, size_t n) {
    if (n == 0) return;
    if (!r->ok || r->len - r->pos < n) { r->ok = false; memset(dst, 0, n); return; }
    memcpy(dst, r->p + r->pos, n);
    r->pos += n;
}
/* Steps over n bytes; past the end, the reader stops (ok false) where it is. */
static inline void dr_get_skip(dr_reader_t *r, size_t n) {
    if (!r->ok || r->len - r->pos < n) { r->ok = false; return; }
    r->pos += n;
}
static inline uint8_t dr_get_u8(dr_reader_t *r) { uint8_t v; dr_get_bytes(r, &v, 1); return v; }
static inline uint16_t dr_get_u16(dr_reader_t *r) { uint16_t v; dr_get_bytes(r, &v, 2); return v; }
static inline uint32_t dr_get_u32(dr_reader_t *r) { uint32_t v; dr_get_bytes(r, &v, 4); return v; }
static inline uint64_t dr_get_u64(dr_reader_t *r) { uint64_t v; dr_get_bytes(r, &v, 8); return v; }
static inline int64_t dr_get_i64(dr_reader_t *r) { int64_t v; dr_get_bytes(r, &v, 8); return v; }
static inline float dr_get_f32(dr_reader_t *r) { float v; dr_get_bytes(r, &v, 4); return v; }
static inline double dr_get_f64(dr_reader_t *r) { double v; dr_get_bytes(r, &v, 8); return v; }

/* splitmix64: the one mixer used for ids (hash tables, arm split) and for
 * the seeded generators, so every random choice is reproducible. */
static inline uint64_t dr_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
/* Next value of a splitmix64 stream whose state is *s. */
static inline uint64_t dr_rand64(uint64_t *s) {
    *s += 0x9e3779b97f4a7c15ULL;
    uint64_t x = *s;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}
/* Uniform in [0, 1). */
static inline double dr_rand01(uint64_t *s) { return (double)(dr_rand64(s) >> 11) * 0x1.0p-53; }

#endif /* DR_BYTES_H */
