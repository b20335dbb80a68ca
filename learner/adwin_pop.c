/* adwin_pop.c - the population drift detector of dr_adwin.h: ADWIN over
 * magnified block means of all users' drift samples (or of each sample less
 * its user's level), and the rise that makes a rising cut a population-wide
 * drift. */
#include "dr_adwin.h"

#include <math.h>
#include <string.h>

#include "dr_err.h"

/* Where the slow mean lands once magnified: low, so that a rise, the only
 * direction that is a population drift, has three quarters of the range. */
#define POP_CENTRE 0.25

int dr_adwin_pop_init(dr_adwin_pop_t *d, const dr_adwin_pop_conf_t *conf) {
    memset(d, 0, sizeof(*d));
    if (!(conf->block >= 1) || !(conf->scale >= 1.0) || !(conf->min_rise >= 0.0)) return DR_ECONFIG;
    dr_adwin_conf_t a;
    dr_adwin_conf_default(&a);
    a.delta = conf->delta;
    a.clock = 1;          /* a value is a block of samples already ... */
    a.min_sub_window = 2; /* ... and a side of 4 blocks holds 4 × block samples */
    a.min_window = 4;
    if (dr_adwin_conf_check(&a) != 0) return DR_ECONFIG;
    int err = dr_adwin_init(&d->adwin, &a);
    if (err) return err;
    d->conf = *conf;
    d->slow = d->fast = NAN;
    return 0;
}

void dr_adwin_pop_free(dr_adwin_pop_t *d) { dr_adwin_free_buckets(&d->adwin); }

dr_adwin_pop_cut_t dr_adwin_pop_observe(dr_adwin_pop_t *d, double sample, dr_adwin_pop_view_t *view) {
    d->sum += sample;
    if (++d->n < d->conf.block) return DR_ADWIN_POP_NONE;
    double raw = d->sum / d->n;
    d->sum = 0;
    d->n = 0;
    if (isnan(d->slow)) d->slow = d->fast = raw;
    double x = fmin(1.0, fmax(0.0, POP_CENTRE + d->conf.scale * (raw - d->slow)));
    d->slow += (raw - d->slow) / DR_ADWIN_POP_SLOW_BLOCKS;
    d->fast += (raw - d->fast) / DR_ADWIN_POP_FAST_BLOCKS;
    double total = dr_adwin_total(&d->adwin) + x;
    uint64_t width = dr_adwin_width(&d->adwin) + 1;
    int cut = dr_adwin_update(&d->adwin, x);
    dr_adwin_pop_view_t v = {raw, d->slow, d->fast, NAN, NAN};
    if (cut == 1) {
        /* the kept window's mean against that of the part the cut dropped */
        v.after = dr_adwin_mean(&d->adwin);
        uint64_t dropped = width - dr_adwin_width(&d->adwin);
        v.before = dropped ? (total - dr_adwin_total(&d->adwin)) / (double)dropped : v.after;
    }
    if (view) *view = v;
    if (cut != 1) return DR_ADWIN_POP_NONE;
    if (v.after <= v.before) return DR_ADWIN_POP_FALL;
    /* ADWIN cuts as soon as a change is significant, and its kept window
     * still holds much of the time before it (it sheds the old part over
     * many cuts): what the change amounts to is read from the block means,
     * the last few against their slow mean */
    return d->fast - d->slow >= d->conf.min_rise ? DR_ADWIN_POP_DRIFT : DR_ADWIN_POP_SMALL;
}
