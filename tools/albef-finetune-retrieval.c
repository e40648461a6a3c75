/* albef-finetune-retrieval: fine-tunes an ALBEF model for image-text
 * retrieval (ALBEF's Retrieval.py): ITC with every caption of the same image
 * as a positive, ITM with hard negatives of other images, momentum
 * distillation; validation after each epoch keeps the best checkpoint, and
 * the test file is evaluated with it at the end. See albef-finetune-retrieval(1). */
#include "albef.h"
#include "albef_internal.h"
#include "core/args.h"
#include "core/threads.h"
#include "core/file.h"
#include "eval/retrieval.h"
#include "train/cli.h"

#include <cjson/cJSON.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "albef-finetune-retrieval"

typedef struct {
    train_cli tc;
    const char *train, *val, *test;
    int k, eval_batch, eval_tokens;
} options;

static void usage(FILE *f, const train_cli *defaults)
{
    fprintf(f,
            "Usage: " PROG " --train FILE --init CKPT --vocab VOCAB --out DIR [OPTION]...\n"
            "Fine-tune ALBEF for image-text retrieval (ITC with same-image positives, ITM with\n"
            "hard negatives, momentum distillation) as ALBEF's Retrieval.py does; defaults are\n"
            "Retrieval_coco.yaml's. Training files have one caption per item\n"
            "([{\"image\", \"caption\", \"image_id\"}]); validation and test files list each image\n"
            "with its captions ([{\"image\", \"caption\": [texts]}]).\n"
            "\n"
            "Data and evaluation:\n"
            "  -t, --train FILES        retrieval training manifests, comma-separated\n"
            "      --val FILE           validation set: evaluated after each epoch; the best\n"
            "                           r_mean is kept as checkpoint_best.safetensors\n"
            "      --test FILE          test set: evaluated at the end with the best weights\n"
            "  -k, --k N                candidates re-ranked by ITM per query (default 256;\n"
            "                           ALBEF uses 128 for Flickr30K)\n"
            "      --eval-batch N       images per embedding pass when evaluating (default 64)\n"
            "      --eval-tokens N      text length when evaluating (default 30)\n");
    train_cli_usage(f, defaults);
    fprintf(f,
            "  -h, --help               show this help and exit\n"
            "  -V, --version            show the version and exit\n"
            "\n"
            "Evaluation lines go to the log as JSON ({\"epoch\", \"val_txt_r1\", ...} and\n"
            "{\"test_txt_r1\", ...}). SIGINT or SIGTERM finish the current step, save a\n"
            "checkpoint and exit 130 / 143.\n"
            "Exit status: 0 on success, 1 on failure, 2 on a usage error. See " PROG "(1).\n");
}

#define usage_error(...) usage_fail(PROG, __VA_ARGS__)

enum { OPT_VAL = 256, OPT_TEST, OPT_EVAL_BATCH, OPT_EVAL_TOKENS };

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option own[] = {
        {"train", required_argument, 0, 't'},
        {"val", required_argument, 0, OPT_VAL},
        {"test", required_argument, 0, OPT_TEST},
        {"k", required_argument, 0, 'k'},
        {"eval-batch", required_argument, 0, OPT_EVAL_BATCH},
        {"eval-tokens", required_argument, 0, OPT_EVAL_TOKENS},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
    };
    struct option longs[64];
    train_cli_merge_longs(own, (int)(sizeof own / sizeof own[0]), longs, 64);
    *o = (options){.k = 256, .eval_batch = 64, .eval_tokens = 30};
    /* Retrieval_coco.yaml */
    train_cli_defaults(&o->tc);
    o->tc.image_res = 384;
    o->tc.batch = 32;
    o->tc.epochs = 5;
    o->tc.lr = 1e-5;
    o->tc.min_lr = 1e-6;
    o->tc.warmup_lr = 1e-5;
    o->tc.warmup_epochs = 1;
    o->tc.crop_min = 0.5;
    o->tc.max_tokens = 40;
    o->tc.keep = 1;
    o->tc.alpha = 0.4;      /* the fine-tuning yaml's, not the checkpoint's */
    o->tc.momentum = 0.995;
    char err[256];
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:k:c:o:b:qhV", longs, NULL)) != -1) {
        switch (c) {
        case 't': o->train = optarg; break;
        case OPT_VAL: o->val = optarg; break;
        case OPT_TEST: o->test = optarg; break;
        case 'k':
            if (parse_int_arg(optarg, 1, 1000000, &o->k))
                return usage_error("--k must be an integer in [1, 1000000], not '%s'", optarg);
            break;
        case OPT_EVAL_BATCH:
            if (parse_int_arg(optarg, 1, 100000, &o->eval_batch))
                return usage_error("--eval-batch must be an integer in [1, 100000], not '%s'", optarg);
            break;
        case OPT_EVAL_TOKENS:
            if (parse_int_arg(optarg, 2, 512, &o->eval_tokens))
                return usage_error("--eval-tokens must be an integer in [2, 512], not '%s'", optarg);
            break;
        case 'h': usage(stdout, &o->tc); exit(0);
        case 'V': printf(PROG " %s\n", albef_version()); exit(0);
        default:
            if (train_cli_other(&o->tc, c, optarg, argv[optind - 1], err, sizeof err))
                return usage_error("%s", err);
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'", argv[optind]);
    if (!o->train)
        return usage_error("%s", "--train is required");
    if (train_cli_check(&o->tc, err, sizeof err))
        return usage_error("%s", err);
    if (!o->tc.init && !o->tc.resume && !o->tc.config)
        return usage_error("%s", "give --init (a pre-trained checkpoint), --resume, or --config to start from "
                                 "random weights");
    return 0;
}

/* ---- evaluation ---- */

typedef struct {
    const options *o;
    train_session *s;
    manifest *val, *test;
    double best;   /* best validation r_mean so far (-1: none) */
    int best_epoch;
    char best_path[4096], best_json[4096];
} run_state;

static void log_metrics(FILE *log, const char *prefix, int epoch, const retrieval_metrics *r)
{
    fprintf(log, "{");
    if (epoch >= 0)
        fprintf(log, "\"epoch\":%d,", epoch);
    fprintf(log,
            "\"%s_txt_r1\":%.4f,\"%s_txt_r5\":%.4f,\"%s_txt_r10\":%.4f,\"%s_txt_r_mean\":%.4f,"
            "\"%s_img_r1\":%.4f,\"%s_img_r5\":%.4f,\"%s_img_r10\":%.4f,\"%s_img_r_mean\":%.4f,\"%s_r_mean\":%.4f}\n",
            prefix, r->txt_r1, prefix, r->txt_r5, prefix, r->txt_r10, prefix, r->txt_r_mean, prefix, r->img_r1,
            prefix, r->img_r5, prefix, r->img_r10, prefix, r->img_r_mean, prefix, r->r_mean);
    fflush(log);
}

static int evaluate(albef_ctx *ctx, const run_state *rs, const manifest *m, retrieval_metrics *r)
{
    const options *o = rs->o;
    retrieval_eval_options eo = {
        .image_root = o->tc.image_root, .batch = o->eval_batch, .max_words = o->tc.max_words,
        .max_tokens = o->eval_tokens, .rank = {.k_test = o->k},
    };
    return retrieval_evaluate(ctx, rs->s->tok, m, &eo, r);
}

static int eval_params(const options *o, albef_params *p)
{
    *p = albef_params_default();
    p->device = o->tc.device;
    p->max_batch = o->eval_batch;
    p->max_text_len = o->eval_tokens;
    return 0;
}

/* The best validation score of an earlier (resumed) run, from best.json. */
static void read_best(run_state *rs)
{
    char *text = NULL;
    if (file_read_all(rs->best_json, &text, NULL))
        return;
    cJSON *j = cJSON_Parse(text);
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(j, "r_mean");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "epoch");
    if (cJSON_IsNumber(r) && cJSON_IsNumber(e)) {
        rs->best = r->valuedouble;
        rs->best_epoch = e->valueint;
    }
    cJSON_Delete(j);
    free(text);
}

static int end_of_epoch(pretrainer *t, int epoch, const train_position *pos, void *user)
{
    run_state *rs = user;
    if (!rs->val)
        return ALBEF_OK;
    albef_params p;
    eval_params(rs->o, &p);
    albef_ctx *ctx;
    int rc = albef_wrap_model(&t->online, t->be, &p, &ctx);
    retrieval_metrics r;
    rc = rc ? rc : evaluate(ctx, rs, rs->val, &r);
    albef_free(ctx);
    if (rc)
        return rc;
    log_metrics(rs->s->log, "val", epoch, &r);
    albef_log(ALBEF_LOG_INFO, "epoch %d: validation r_mean %.2f (txt R@1 %.2f, img R@1 %.2f)", epoch, r.r_mean,
              r.txt_r1, r.img_r1);
    if (r.r_mean > rs->best) {
        rc = pretrain_checkpoint_save(t, rs->best_path, pos);
        char json[128];
        int n = snprintf(json, sizeof json, "{\"epoch\":%d,\"r_mean\":%.17g}\n", epoch, r.r_mean);
        rc = rc ? rc : file_write_all_atomic(rs->best_json, json, (size_t)n);
        if (!rc) {
            rs->best = r.r_mean;
            rs->best_epoch = epoch;
            albef_log(ALBEF_LOG_INFO, "saved %s (best so far)", rs->best_path);
        }
    }
    return rc;
}

static int final_test(run_state *rs)
{
    const options *o = rs->o;
    albef_params p;
    eval_params(o, &p);
    albef_ctx *ctx;
    int from_best = rs->best >= 0;
    int rc = from_best ? albef_load(rs->best_path, &p, &ctx) : albef_wrap_model(&rs->s->t.online, rs->s->be, &p, &ctx);
    retrieval_metrics r;
    rc = rc ? rc : evaluate(ctx, rs, rs->test, &r);
    albef_free(ctx);
    if (rc)
        return rc;
    log_metrics(rs->s->log, "test", from_best ? rs->best_epoch : -1, &r);
    albef_log(ALBEF_LOG_INFO, "test (%s): r_mean %.2f (txt R@1 %.2f, img R@1 %.2f)",
              from_best ? "best validation epoch" : "last weights", r.r_mean, r.txt_r1, r.img_r1);
    return ALBEF_OK;
}

int main(int argc, char **argv)
{
    threads_prefer_passive_wait(argv);
    options o;
    int rc = parse_options(argc, argv, &o);
    if (rc)
        return rc;
    if (o.tc.quiet)
        albef_log_set_level(ALBEF_LOG_WARN);
    train_session s;
    run_state rs = {.o = &o, .s = &s, .best = -1};
    snprintf(rs.best_path, sizeof rs.best_path, "%s/checkpoint_best.safetensors", o.tc.out);
    snprintf(rs.best_json, sizeof rs.best_json, "%s/best.json", o.tc.out);
    int fresh = 0, stopped_by = 0;
    rc = train_session_open(&s, &o.tc, TASK_RETRIEVAL, o.train, MANIFEST_RETRIEVAL_TRAIN, transform_params_train(),
                            "albef-base-384");
    const char *one[1];
    if (!rc && o.val) {
        one[0] = o.val;
        rc = manifest_load(&rs.val, MANIFEST_RETRIEVAL_EVAL, one, 1);
    }
    if (!rc && o.test) {
        one[0] = o.test;
        rc = manifest_load(&rs.test, MANIFEST_RETRIEVAL_EVAL, one, 1);
    }
    rc = rc ? rc : train_session_start(&s, &o.tc, &fresh);
    if (!rc && o.tc.resume)
        read_best(&rs);
    rc = rc ? rc : train_session_run(&s, &o.tc, end_of_epoch, &rs, &stopped_by);
    if (!rc && !stopped_by && rs.test)
        rc = final_test(&rs);
    manifest_free(rs.val);
    manifest_free(rs.test);
    train_session_close(&s);
    if (rc) {
        fprintf(stderr, PROG ": %s\n", albef_errmsg());
        return 1;
    }
    if (stopped_by) {
        fprintf(stderr, PROG ": stopped by signal %d after saving a checkpoint\n", stopped_by);
        return 128 + stopped_by;
    }
    return 0;
}
