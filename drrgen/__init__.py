"""drrgen: DRRs and many-to-many correspondence ground truth from CT volumes."""
