# Produces testdata/manifests/golden.json: what ALBEF's dataset classes
# (dataset/caption_dataset.py, vqa_dataset.py, nlvr_dataset.py, ve_dataset.py,
# grounding_dataset.py) derive from each fixture manifest in testdata/manifests/,
# following their rules: dense image ids by first appearance in a dict, VQA
# answer weights accumulated as += 1/len(answers), NLVR "True" -> 1, SNLI-VE
# id + ".jpg" and label map, caption ids numbered across images.
# tests/test_manifest.c checks the C loader against it.
#
#   /usr/bin/python3 scripts/dev/manifest_golden.py   (from the repository root)
import json
import os

HERE = "testdata/manifests"

FIXTURES = [
    ("pretrain", ["pretrain_coco.json", "pretrain_cc3m.json"]),
    ("retrieval-train", ["coco_train.json"]),
    ("retrieval-train", ["flickr30k_train.json"]),
    ("retrieval-eval", ["coco_test.json"]),
    ("vqa-train", ["vqa_train.json"]),
    ("vqa-test", ["vqa_test.json"]),
    ("answer-list", ["answer_list.json"]),
    ("nlvr", ["nlvr_dev.json"]),
    ("ve", ["ve_dev.json"]),
    ("grounding-train", ["refcoco+_train.json"]),
    ("grounding-eval", ["refcoco+_val.json"]),
]

VE_LABELS = {"entailment": 2, "neutral": 1, "contradiction": 0}


def load(files):
    ann = []
    for f in files:
        ann += json.load(open(os.path.join(HERE, f)))
    return ann


def dense(keys):
    ids = {}
    for k in keys:
        if k not in ids:
            ids[k] = len(ids)
    return ids


def expected(kind, files):
    ann = load(files)
    items = []
    image_count = 0
    if kind == "pretrain":
        for a in ann:
            caps = a["caption"] if isinstance(a["caption"], list) else [a["caption"]]
            items.append({"image": a["image"], "texts": caps})
    elif kind == "retrieval-train":
        ids = dense(a["image_id"] for a in ann)
        image_count = len(ids)
        for a in ann:
            items.append({"image": a["image"], "texts": [a["caption"]], "image_idx": ids[a["image_id"]]})
    elif kind == "retrieval-eval":
        txt_id = 0
        for a in ann:
            img2txt = []
            for _ in a["caption"]:
                img2txt.append(txt_id)
                txt_id += 1
            items.append({"image": a["image"], "texts": a["caption"], "img2txt": img2txt})
    elif kind == "vqa-train":
        for a in ann:
            if a["dataset"] == "vqa":
                weight = {}
                for ans in a["answer"]:
                    weight[ans] = weight.get(ans, 0) + 1 / len(a["answer"])
                answers, weights = list(weight.keys()), list(weight.values())
            else:
                answers, weights = [a["answer"]], [0.5]
            items.append({"image": a["image"], "texts": [a["question"]], "dataset": a["dataset"],
                          "question_id": a.get("question_id", -1), "answers": answers, "weights": weights})
    elif kind == "vqa-test":
        for a in ann:
            items.append({"image": a["image"], "texts": [a["question"]], "dataset": a.get("dataset", "vqa"),
                          "question_id": a["question_id"]})
    elif kind == "answer-list":
        items = [{"texts": [a]} for a in ann]
    elif kind == "nlvr":
        for a in ann:
            items.append({"image": a["images"][0], "image2": a["images"][1], "texts": [a["sentence"]],
                          "label": 1 if a["label"] == "True" else 0})
    elif kind == "ve":
        for a in ann:
            items.append({"image": "%s.jpg" % a["image"], "texts": [a["sentence"]], "label": VE_LABELS[a["label"]]})
    elif kind == "grounding-train":
        ids = dense(a["image"].split("/")[-1] for a in ann)
        image_count = len(ids)
        for a in ann:
            items.append({"image": a["image"], "texts": [a["text"]], "image_idx": ids[a["image"].split("/")[-1]]})
    elif kind == "grounding-eval":
        for a in ann:
            items.append({"image": a["image"], "texts": [a["text"]], "ref_id": a["ref_id"]})
    return {"kind": kind, "files": files, "image_count": image_count, "items": items}


cases = [expected(kind, files) for kind, files in FIXTURES]
with open(os.path.join(HERE, "golden.json"), "w") as f:
    json.dump(cases, f, indent=1, ensure_ascii=False)
    f.write("\n")
