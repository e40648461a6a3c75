/* albef-pretrain: ALBEF pre-training (ITC + ITM with hard negatives + MLM,
 * momentum distillation, feature queues) on image-caption manifests.
 * See albef-pretrain(1). */
#include "albef.h"
#include "core/args.h"
#include "core/threads.h"
#include "model/convert.h"
#include "train/cli.h"

#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PROG "albef-pretrain"

typedef struct {
    train_cli tc;
    const char *train, *init_bert, *init_vit;
} options;

static void usage(FILE *f, const train_cli *defaults)
{
    fprintf(f,
            "Usage: " PROG " --train FILE[,FILE...] --vocab VOCAB --out DIR [OPTION]...\n"
            "Pre-train ALBEF (ITC + ITM + MLM with momentum distillation) on image-caption\n"
            "manifests in ALBEF's format: [{\"image\": path, \"caption\": text or [texts]}].\n"
            "Defaults are Pretrain.yaml's; the model is albef-base unless told.\n"
            "\n"
            "Data and model:\n"
            "  -t, --train FILES        pre-training manifests, comma-separated\n"
            "      --init-bert FILE     BERT weights (Hugging Face names; .bin or .safetensors)\n"
            "      --init-vit FILE      DeiT weights (timm names; .pth or .safetensors)\n");
    train_cli_usage(f, defaults);
    fprintf(f,
            "  -h, --help               show this help and exit\n"
            "  -V, --version            show the version and exit\n"
            "\n"
            "SIGINT or SIGTERM finish the current step, save a checkpoint and exit 130 / 143.\n"
            "Exit status: 0 on success, 1 on failure, 2 on a usage error. See " PROG "(1).\n");
}

#define usage_error(...) usage_fail(PROG, __VA_ARGS__)

enum { OPT_INIT_BERT = 256, OPT_INIT_VIT };

static int parse_options(int argc, char **argv, options *o)
{
    static const struct option own[] = {
        {"train", required_argument, 0, 't'},
        {"init-bert", required_argument, 0, OPT_INIT_BERT},
        {"init-vit", required_argument, 0, OPT_INIT_VIT},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
    };
    struct option longs[64];
    train_cli_merge_longs(own, (int)(sizeof own / sizeof own[0]), longs, 64);
    *o = (options){0};
    train_cli_defaults(&o->tc);
    char err[256];
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, ":t:c:o:b:qhV", longs, NULL)) != -1) {
        switch (c) {
        case 't': o->train = optarg; break;
        case OPT_INIT_BERT: o->init_bert = optarg; break;
        case OPT_INIT_VIT: o->init_vit = optarg; break;
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
    if (o->tc.init && (o->init_bert || o->init_vit))
        return usage_error("%s", "--init and --init-bert/--init-vit exclude each other");
    if (o->tc.resume && (o->init_bert || o->init_vit))
        return usage_error("%s", "--resume continues a run; it takes no --init-bert/--init-vit");
    return 0;
}

/* BERT (Hugging Face) and DeiT (timm) weights under ALBEF's names. */
static int load_pretrained_parts(pretrainer *t, const options *o)
{
    load_report bert_rep, vit_rep;
    int rc = convert_load_bert_vit(&t->online, o->init_bert, o->init_vit, &bert_rep, &vit_rep);
    if (!rc && o->init_bert)
        albef_log(ALBEF_LOG_INFO, "%s: %d tensors loaded into the text encoder (%d not used%s%s)", o->init_bert,
                  bert_rep.loaded, bert_rep.unexpected, bert_rep.unexpected ? ": " : "", bert_rep.unexpected_names);
    if (!rc && o->init_vit)
        albef_log(ALBEF_LOG_INFO, "%s: %d tensors loaded into the image encoder (%d not used%s%s)", o->init_vit,
                  vit_rep.loaded, vit_rep.unexpected, vit_rep.unexpected ? ": " : "", vit_rep.unexpected_names);
    pretrainer_sync_momentum(t);
    return rc;
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
    int fresh = 0, stopped_by = 0;
    rc = train_session_open(&s, &o.tc, TASK_PRETRAIN, o.train, MANIFEST_PRETRAIN, transform_params_pretrain(),
                            "albef-base");
    rc = rc ? rc : train_session_start(&s, &o.tc, &fresh);
    if (!rc && fresh)
        rc = load_pretrained_parts(&s.t, &o);
    rc = rc ? rc : train_session_run(&s, &o.tc, NULL, NULL, &stopped_by);
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
