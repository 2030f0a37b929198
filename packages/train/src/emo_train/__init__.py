"""EMO train package: the model (`emo_train.models`), the shard data pipeline (`emo_train.data`)
and the three-stage trainer.

    emo-train --stage 1 --shards annotated/ --out runs/s1 --preset sd15 --base-model SD15_DIR
    emo-train --stage 2 --shards annotated/ --out runs/s2 --init-from runs/s1 --motion-adapter ADAPTER
    emo-train --stage 3 --shards annotated/ --out runs/s3 --init-from runs/s2

In Python: `emo_train.train.train(emo_train.config.TrainConfig.from_dict({...}))`.
"""
